import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The CLI as it ships: the bundle the build makes (bin and main of package.json). */
export const CLI = resolve('dist/cdc-sync.mjs');

export interface CliProcess {
  child: ChildProcess;
  /** Parsed JSON log lines so far. */
  logs: Record<string, unknown>[];
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** HTTP port once the process logged "cdc-sync running". */
  port: () => Promise<number>;
  url: (path: string) => Promise<string>;
  /** The text of GET /metrics. */
  metrics: () => Promise<string>;
}

/** Runs the built CLI as a user would (`npm test` builds it first). */
export function runCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const logs: Record<string, unknown>[] = [];
  let pending = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = async () => {
    await waitFor(() => logs.some((l) => l.msg === 'cdc-sync running') || child.exitCode !== null, 20_000, () => err);
    const line = logs.find((l) => l.msg === 'cdc-sync running');
    if (!line) throw new Error(`cdc-sync did not start:\n${err}`);
    return line.port as number;
  };
  return {
    child,
    logs,
    stdout: () => out,
    stderr: () => err,
    exited,
    port,
    url: async (path) => `http://127.0.0.1:${await port()}${path}`,
    metrics: async () => (await fetch(`http://127.0.0.1:${await port()}/metrics`)).text(),
  };
}

/** Runs the CLI to completion. */
export async function runCliToEnd(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = runCli(args, env);
  const code = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

export function writeConfig(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-test-'));
  const path = join(dir, 'cdc-sync.yaml');
  writeFileSync(path, yaml);
  return path;
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 30_000, explain: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms\n${explain()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The value of one Prometheus series in /metrics text, e.g. metric('cdc_sync_connected', {stream: 'a'}). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** The CLI processes a test file started: stopped by signal, and killed after each test. */
export class CliProcesses {
  private running: CliProcess[] = [];

  add(cli: CliProcess): CliProcess {
    this.running.push(cli);
    return cli;
  }

  /** Sends `signal` and waits for the exit code. */
  async stop(cli: CliProcess, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    cli.child.kill(signal);
    const code = await cli.exited;
    this.forget(cli);
    return code;
  }

  forget(cli: CliProcess): void {
    this.running = this.running.filter((c) => c !== cli);
  }

  async killAll(): Promise<void> {
    for (const cli of this.running) cli.child.kill('SIGKILL');
    await Promise.all(this.running.map((c) => c.exited));
    this.running = [];
  }
}
