import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { metricValue, waitFor } from '../support/cli.js';

/**
 * The embedded default as a user runs it: `npm start` on a fresh data
 * folder, nothing else installed or configured. Changes must flow both
 * ways, /metrics must answer, and Ctrl-C must stop it with both sides equal.
 */
const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm start (the embedded demo)', () => {
  it('syncs the clinic and the portal both ways, serves /metrics, and stops cleanly on SIGINT with both sides equal', async () => {
    const data = join(dir, 'data');
    // Without prestart's build: `npm test` built dist/ already, and building again would rewrite the files
    // other test files' processes are loading at this moment (a half-written bundle is a SyntaxError there).
    const child = spawn('npm', ['start', '--ignore-scripts', '--', '--dir', data, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => /metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/.test(out), 90_000, () => `${out}\n${err}`);
      const url = /metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(out)![1]!;
      const flowed = async () => {
        const text = await (await fetch(url)).text();
        const sum = (stream: string) =>
          ['insert', 'update', 'delete']
            .flatMap((op) => ['public.aligner_batches', 'public.aligner_notes', 'tblPatients'].map((table) => metricValue(text, 'cdc_sync_events_applied_total', { stream, table, op }) ?? 0))
            .reduce((a, b) => a + b, 0);
        return sum('clinic-to-cloud') > 0 && sum('cloud-to-clinic') > 0;
      };
      await waitFor(flowed, 60_000, () => `${out}\n${err}`);
      const text = await (await fetch(url)).text();
      expect(metricValue(text, 'cdc_sync_connected', { stream: 'clinic-to-cloud' })).toBe(1);
      expect(metricValue(text, 'cdc_sync_connected', { stream: 'cloud-to-clinic' })).toBe(1);
    } finally {
      // Ctrl-C for the demo process itself: npm dies of the signal (no exit code), the demo must exit 0.
      const demo = execFileSync('pgrep', ['-f', `^node --max-semi-space-size=8 dist/cdc-sync.mjs demo --dir ${data}`], { encoding: 'utf8' }).trim().split('\n').map(Number);
      for (const pid of demo) process.kill(pid, 'SIGINT');
    }
    expect(await exited, `${out}\n${err}`).toBe(0);
    expect(out).toContain('both sides agree');
    expect(out).toMatch(/clinic → portal \d+ changes \| portal → clinic \d+ changes \| lag [\d.]+ s \| failed 0/);
  }, 240_000);
});
