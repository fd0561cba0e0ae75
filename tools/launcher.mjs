#!/usr/bin/env -S node --max-semi-space-size=8
// cdc-sync's command line (dist/cdc-sync.mjs): runs the bundle, dist/cdc-sync.cjs, through V8's code cache.
// Compiling the 4 MB bundle was a third of every start (~100 ms of ~300); Node.js 20 has no compile cache
// of its own (module.enableCompileCache came with 22), so this keeps V8's where Node.js 22 keeps its own,
// in the temporary directory: one file per Node.js version, options and bundle, written when missing or
// refused. CDC_SYNC_CODE_CACHE=off leaves it out; a cache that cannot be read or written is only slower.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

// A signal before the command installs its own handlers (compiling, loading the configuration) stops at once
// with exit 0 and a line saying so: nothing runs yet. Without it Node.js exits 143 in silence, and as PID 1
// in a container (no default action there) the signal would be ignored until the runtime kills the process.
const stopEarly = (signal) => {
  process.stderr.write(`${JSON.stringify({ level: 30, time: new Date().toISOString(), app: 'cdc-sync', signal, msg: 'stopped before start' })}\n`);
  process.exit(0);
};
process.on('SIGTERM', stopEarly);
process.on('SIGINT', stopEarly);
globalThis.__cdcSyncEarlySignal = stopEarly;

const bundle = fileURLToPath(new URL('./cdc-sync.cjs', import.meta.url));
const cacheFile = process.env.CDC_SYNC_CODE_CACHE === 'off' ? null : codeCacheFile();
let cachedData;
try {
  if (cacheFile) cachedData = readFileSync(cacheFile);
} catch {
  // None yet.
}
// The bundle is CommonJS, wrapped as Node.js wraps a module; the first line keeps its line numbers.
const source = `(function (exports, require, module, __filename, __dirname) { ${readFileSync(bundle, 'utf8')}\n})`;
const script = new vm.Script(source, { filename: bundle, cachedData });
const used = cachedData !== undefined && !script.cachedDataRejected;
if (process.env.CDC_SYNC_CODE_CACHE === 'report') process.stderr.write(`code cache: ${used ? 'used' : cachedData ? 'refused' : 'none'}\n`);
cachedData = undefined; // 1.4 MB the process need not keep
if (cacheFile && !used) {
  // Made at exit, so it holds every function this run compiled, not only the bundle's top level.
  process.once('exit', () => {
    try {
      mkdirSync(dirname(cacheFile), { recursive: true });
      const partial = `${cacheFile}.${process.pid}`;
      writeFileSync(partial, script.createCachedData());
      renameSync(partial, cacheFile);
    } catch {
      // Read-only or full: next time compiles again.
    }
  });
}
// A script compiled from V8's cache cannot call import() on Node.js 20; the bundle borrows this module's (src/core/import-module.ts).
globalThis.__cdcSyncImport = (specifier) => import(specifier);
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dirname(bundle));

function codeCacheFile() {
  try {
    const { size, mtimeMs } = statSync(bundle);
    const key = [process.version, process.arch, process.execArgv.join(' '), process.env.NODE_OPTIONS ?? '', bundle, size, mtimeMs].join('\0');
    return join(tmpdir(), 'cdc-sync-code-cache', `${process.version}-${fnv1a(key)}.bin`);
  } catch {
    return null;
  }
}

/** A short, stable name for the key (FNV-1a, 32 bits): node:crypto would cost more to load than it saves. */
function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, '0');
}
