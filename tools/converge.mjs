#!/usr/bin/env node
// `npm run converge -- [--runs N] [--seed S [--path P]] [--pair NAME] [--minutes M] [--parallel K] [--history JSON]`: the
// convergence checker (test/converge) for as many random histories as asked, one seed replayed, or one history exactly
// as a failure printed it (`--history`, with its `--pair`).
// Runs through vitest because the checker uses the suite's private PostgreSQL cluster.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    pair: { type: 'string' },
    path: { type: 'string' },
    minutes: { type: 'string' },
    parallel: { type: 'string' },
    history: { type: 'string' },
  },
});
const env = { ...process.env, CONVERGE_RUNS: values.runs };
if (values.seed !== undefined) env.CONVERGE_SEED = values.seed;
if (values.pair !== undefined) env.CONVERGE_PAIR = values.pair;
if (values.path !== undefined) env.CONVERGE_PATH = values.path;
if (values.minutes !== undefined) env.CONVERGE_MINUTES = values.minutes;
if (values.parallel !== undefined) env.CONVERGE_PARALLEL = values.parallel;
if (values.history !== undefined) env.CONVERGE_HISTORY = values.history;
const result = spawnSync('npx', ['vitest', 'run', 'test/converge', '--reporter=verbose'], { stdio: 'inherit', env });
process.exit(result.status ?? 1);
