#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli.js) and its pure-JavaScript dependencies into one
// script, dist/cdc-sync.cjs: Node.js 20 then reads one file instead of ~900 (rxjs, zod,
// yaml, fastify, pino…), which halves start-up. Native addons and the drivers loaded on
// first use stay outside and come from node_modules as before. The command line itself,
// dist/cdc-sync.mjs, is tools/launcher.mjs: it runs the bundle through V8's code cache.
// CommonJS, not an ES module: V8's code cache is open to scripts only (vm.Script).
import { build } from 'esbuild';
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const EXTERNAL = ['better-sqlite3', 'mssql', '@supabase/supabase-js', '@electric-sql/pglite', '@nats-io/transport-node', '@nats-io/jetstream'];
// Optional native helpers that pg and ws try to load inside try/catch and do without.
const OPTIONAL = ['pg-native', 'bufferutil', 'utf-8-validate'];
for (const name of EXTERNAL) {
  if (!pkg.dependencies[name]) throw new Error(`external ${name} is not a dependency`);
}

// pg picks its socket implementation at load by asking whether it runs on Cloudflare Workers; on
// Node.js 20 that question constructs a fetch Response, which loads Node's whole fetch implementation
// (about 30 ms of every start). The bundle only ever runs on Node.js: it asks nothing.
const nodeOnlyPg = {
  name: 'node-only-pg',
  setup(b) {
    b.onLoad({ filter: /[\\/]pg[\\/]lib[\\/]stream\.js$/ }, async (args) => {
      const source = readFileSync(args.path, 'utf8');
      const patched = source.replace('if (isCloudflareRuntime()) {', 'if (false) {');
      if (patched === source) throw new Error(`${args.path}: pg no longer asks isCloudflareRuntime() as expected; update tools/bundle.mjs`);
      return { contents: patched, loader: 'js' };
    });
  },
};

// rxjs's package sends Node.js to its CommonJS build, which esbuild cannot tree-shake: the bundle held and evaluated
// all of rxjs (350 kB). Its ES module build (the one its exports map gives bundlers, "es2015") is the same code.
const rxjsModules = {
  name: 'rxjs-modules',
  setup(b) {
    b.onResolve({ filter: /^rxjs(\/operators)?$/ }, (args) => ({ path: fileURLToPath(new URL(`../node_modules/rxjs/dist/esm/${args.path === 'rxjs' ? '' : 'operators/'}index.js`, import.meta.url)) }));
  },
};

// Written whole, then renamed into place: a process that starts while the bundle is being rebuilt reads the old
// file or the new one, never half of one.
const built = await build({
  write: false,
  entryPoints: ['dist/src/cli.js'],
  outfile: 'dist/cdc-sync.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: [...EXTERNAL, ...OPTIONAL],
  sourcemap: 'linked',
  legalComments: 'none',
  // Every start reads, hashes and deserializes the bundle with its code cache, in time proportional to its size:
  // without comments and whitespace (names kept, for stack traces) 2 MB instead of 4, and ~60 ms less per start.
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  plugins: [nodeOnlyPg, rxjsModules],
});
for (const file of built.outputFiles) replaceWhole(file.path, file.path.endsWith('.cjs') ? asciiOnly(file.text) : file.contents);

// The bundle of earlier builds was the command line itself.
rmSync('dist/cdc-sync.mjs.map', { force: true });
replaceWhole('dist/cdc-sync.mjs', readFileSync('tools/launcher.mjs'), 0o755);

// V8 keeps a script's source in memory for its whole life, two bytes a character as soon as one character is
// outside Latin-1: a dash or an arrow in a comment of one dependency made the 4 MB bundle an 8 MB string. esbuild
// already writes strings, templates and regular expressions as ASCII escapes (its default charset), so what is left
// is in comments: each UTF-16 unit becomes "?", which keeps every column of the source map where it was.
function asciiOnly(text) {
  return text.replace(/[^\x00-\x7f]/g, '?');
}

function replaceWhole(path, contents, mode = 0o644) {
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, contents, { mode });
  chmodSync(partial, mode);
  renameSync(partial, path);
}
