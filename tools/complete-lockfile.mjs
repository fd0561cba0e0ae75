#!/usr/bin/env node
// Adds lock entries for optional dependencies npm left out (packages the registry mirror lacks),
// so that `npm ci` accepts the lock; they are platform binaries npm skips on this platform anyway.
import { readFileSync, writeFileSync } from 'node:fs';
const path = process.argv[2] ?? 'package-lock.json';
const lock = JSON.parse(readFileSync(path, 'utf8'));
const packages = lock.packages;
let added = 0;
for (const [where, entry] of Object.entries(packages)) {
  for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    if (packages[key] || packages[`${where}/node_modules/${name}`]) continue;
    packages[key] = { version: range, dev: entry.dev ?? undefined, optional: true };
    added += 1;
  }
}
writeFileSync(path, JSON.stringify(lock, null, 2) + '\n');
console.log(`added ${added} optional entries`);
