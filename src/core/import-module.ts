/**
 * `import()` of a module loaded on first use (drivers, clients). The bundled
 * CLI runs from V8's code cache (tools/launcher.mjs), and on Node.js 20 a
 * script compiled from that cache cannot call import() itself ("A dynamic
 * import callback was not specified"): the launcher lends its own.
 */
export function importModule<T>(specifier: string): Promise<T> {
  const lent = (globalThis as { __cdcSyncImport?: (specifier: string) => Promise<unknown> }).__cdcSyncImport;
  return (lent ? lent(specifier) : import(specifier)) as Promise<T>;
}
