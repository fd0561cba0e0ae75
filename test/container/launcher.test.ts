import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-launcher-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the command line with its temporary directory (where the code cache lives) in `dir`; the cache's state comes first on stderr. */
function start(nodeOptions: string[], args: string[]): { cache: string; status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [...nodeOptions, CLI, ...args], {
    env: { ...process.env, TMPDIR: dir, CDC_SYNC_CODE_CACHE: 'report' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const [first, ...rest] = result.stderr.split('\n');
  return { cache: first!, status: result.status, stderr: rest.join('\n') };
}

const cacheFiles = () => readdirSync(join(dir, 'cdc-sync-code-cache')).filter((f) => f.endsWith('.bin'));

describe('the command line (dist/cdc-sync.mjs, tools/launcher.mjs)', () => {
  it("runs the bundle from V8's code cache: made at the first start, used at the next, made apart for other Node.js options", () => {
    expect(start(['--max-semi-space-size=8'], ['--help'])).toMatchObject({ cache: 'code cache: none', status: 0 });
    expect(cacheFiles()).toHaveLength(1);
    expect(start(['--max-semi-space-size=8'], ['--help'])).toMatchObject({ cache: 'code cache: used', status: 0 });
    // V8 refuses a cache made under other options: they get their own.
    expect(start([], ['--help'])).toMatchObject({ cache: 'code cache: none', status: 0 });
    expect(start([], ['--help'])).toMatchObject({ cache: 'code cache: used', status: 0 });
    expect(cacheFiles()).toHaveLength(2);
  });

  it('loads a driver on first use when the bundle came from the cache (its import() is the launcher’s)', () => {
    const config = join(dir, 'pglite.yaml');
    writeFileSync(
      config,
      `streams:
  - name: s
    source: { type: postgres-changelog, url: "pglite:memory" }
    sink: { type: postgres, url: "pglite:memory" }
    tables: [{ source: public.nothing, target: public.nothing }]
log: { level: warn }
`,
    );
    start(['--max-semi-space-size=8'], ['--help']);
    const run = start(['--max-semi-space-size=8'], ['run', '--once', '--config', config]);
    expect(run.cache).toBe('code cache: used');
    // PGlite was loaded and asked: the table is missing, a configuration error.
    expect(run.stderr).toContain('table public.nothing does not exist in the sink database');
    expect(run.status).toBe(2);
  });

  it('starts without the cache when told to (CDC_SYNC_CODE_CACHE=off)', () => {
    const result = spawnSync(process.execPath, [CLI, '--help'], { env: { ...process.env, TMPDIR: join(dir, 'off'), CDC_SYNC_CODE_CACHE: 'off' }, encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('Usage: cdc-sync');
    expect(() => readdirSync(join(dir, 'off', 'cdc-sync-code-cache'))).toThrow();
  });
});
