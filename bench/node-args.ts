/**
 * The Node.js options cdc-sync ships with: the `cdc-sync` bin's shebang
 * (tools/launcher.mjs), the Dockerfile's NODE_OPTIONS and `npm start`.
 * Benchmarks start the CLI with them too, so they measure the process users run.
 */
export const SHIPPED_NODE_ARGS = ['--max-semi-space-size=8'];

