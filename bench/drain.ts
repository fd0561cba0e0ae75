import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { histogram, parseMetrics, quantile, sum, type Quantile, type Sample } from './prometheus.js';
import { childrenCpu, cpuBetween, cpuSeconds, memory } from './proc.js';
import { SHIPPED_NODE_ARGS } from './node-args.js';

const CLI = fileURLToPath(new URL('../cdc-sync.mjs', import.meta.url));
const POLL_MS = 200;
/** No progress for this long (after start-up) fails the run. */
const STALL_MS = 120_000;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;

export interface DrainOptions {
  sourceUrl: string;
  sinkUrl: string;
  changes: number;
  /** batch.maxSize of the configuration; undefined: no batch block (the default configuration). */
  batchSize?: number | undefined;
  workDir: string;
  /** Postmaster pid, to count the CPU PostgreSQL spends. */
  postmaster: number;
  /** Directory for a V8 CPU profile of the child (`--cpu-prof`), or undefined. */
  cpuProfileDir?: string | undefined;
  /** Extra Node.js options for the child (e.g. --max-old-space-size=96); none for the shipped behaviour. */
  nodeArgs?: string[] | undefined;
  onProgress?: (applied: number, elapsedSeconds: number, samples: Sample[], pid: number) => void;
  /** The configuration's streams; default: one `postgres-changelog` → `postgres` stream, `bench`, with `batchSize`. */
  streams?: Record<string, unknown>[] | undefined;
  /** The streams whose applied changes count towards `changes` (default: all). */
  counts?: ((stream: string) => boolean) | undefined;
  /** Names the configuration file (default: the batch size). */
  label?: string | undefined;
}

export interface DrainResult {
  /** batch.maxSize; null: the default configuration's. */
  batchSize: number | null;
  changes: number;
  /** Spawn of the CLI until the batch that applied the last change committed. */
  seconds: number;
  /** Spawn until the HTTP server listened (configuration, connections, introspection). */
  startupSeconds: number;
  changesPerSecond: number;
  batches: number;
  meanBatchSeconds: number;
  p50: Quantile | null;
  p99: Quantile | null;
  peakRssBytes: number;
  childCpuSeconds: number;
  postgresCpuSeconds: number;
  exitCode: number | null;
  exitSignal: string | null;
}

type ConfigOptions = Pick<DrainOptions, 'sourceUrl' | 'sinkUrl' | 'batchSize' | 'workDir' | 'streams' | 'label'>;

function writeConfig(options: ConfigOptions): string {
  const label = options.label ?? options.batchSize ?? 'default';
  const configPath = join(options.workDir, `cdc-sync-${label}.yaml`);
  writeFileSync(
    configPath,
    stringify({
      streams: options.streams ?? [
        {
          name: 'bench',
          source: { type: 'postgres-changelog', url: options.sourceUrl },
          sink: { type: 'postgres', url: options.sinkUrl },
          tables: [{ source: 'public.items', target: 'public.items' }],
          ...(options.batchSize === undefined ? {} : { batch: { maxSize: options.batchSize } }),
        },
      ],
      // Files (a nats sink's checkpoint, dead letters) in the run's own directory, never the working directory's ./data.
      checkpoints: { store: 'auto', path: join(options.workDir, `checkpoints-${label}.json`) },
      deadLetters: { path: join(options.workDir, 'dead-letters.jsonl') },
      http: { port: 0, host: '127.0.0.1' },
      log: { level: 'info' },
    }),
  );
  return configPath;
}

/**
 * Starts the stream before the burst, as a user's stream runs before the
 * burst arrives: `cdc-sync run --once` copies the (still empty) tables and
 * stores a checkpoint at the log's end, so the drain reads the burst and
 * nothing else (a first start would also copy the rows the burst left).
 */
export async function startStream(options: ConfigOptions): Promise<void> {
  const configPath = writeConfig(options);
  const env = { ...process.env };
  delete env.SYNC_BATCH_SIZE;
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, [CLI, 'run', '--once', '--config', configPath], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const log = childLog(child);
  const exit = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  if (exit !== 0) throw new Error(`cdc-sync run --once exited with ${exit}:\n${log.tail()}`);
}

/**
 * Drains the backlog with the real product: `cdc-sync run` as a child process,
 * watched through its own /metrics until every change is applied; then SIGINT,
 * which must end it with exit code 0.
 */
export async function drain(options: DrainOptions): Promise<DrainResult> {
  const configPath = writeConfig(options);
  const counted = (samples: Sample[], name: string) => sum(samples.filter((s) => options.counts?.(s.labels.stream ?? '') ?? true), name);

  const nodeArgs: string[] = [...(options.nodeArgs ?? [])];
  if (options.cpuProfileDir) {
    mkdirSync(options.cpuProfileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`);
  }
  // The older scripts' variables (SYNC_BATCH_SIZE...) must not change the configured batch.
  const env = { ...process.env };
  delete env.SYNC_BATCH_SIZE;
  delete env.NODE_OPTIONS;

  const pgBefore = childrenCpu(options.postmaster);
  const started = Date.now();
  const child = spawn(process.execPath, [...SHIPPED_NODE_ARGS, ...nodeArgs, CLI, 'run', '--config', configPath], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = childLog(child);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  try {
    const port = await Promise.race([log.port, exited.then(() => null), delay(START_TIMEOUT_MS).then(() => undefined)]);
    if (port === null) throw new Error(`cdc-sync exited with code ${child.exitCode} before listening:\n${log.tail()}`);
    if (port === undefined) throw new Error(`cdc-sync did not listen within ${START_TIMEOUT_MS / 1000} s:\n${log.tail()}`);
    const startupSeconds = (Date.now() - started) / 1000;
    const url = `http://127.0.0.1:${port}/metrics`;

    let applied = 0;
    let lastProgress = Date.now();
    let text = '';
    for (;;) {
      if (hasExited) throw new Error(`cdc-sync exited during the drain:\n${log.tail()}`);
      text = await (await fetch(url)).text();
      const samples = parseMetrics(text);
      const failed = sum(samples, 'cdc_sync_events_failed_total');
      if (failed > 0) throw new Error(`${failed} changes were dead-lettered:\n${log.tail()}`);
      const now = counted(samples, 'cdc_sync_events_applied_total');
      if (now > applied) lastProgress = Date.now();
      applied = now;
      options.onProgress?.(applied, (Date.now() - started) / 1000, samples, child.pid!);
      if (applied >= options.changes) break;
      if (Date.now() - lastProgress > STALL_MS) throw new Error(`no progress for ${STALL_MS / 1000} s at ${applied} changes:\n${log.tail()}`);
      await delay(POLL_MS);
    }
    if (applied !== options.changes) throw new Error(`applied ${applied} changes, expected ${options.changes}`);

    // Measure before stopping: peak RSS of the child, CPU of both sides.
    const peakRssBytes = memory(child.pid!).peak;
    const childCpuSeconds = cpuSeconds(child.pid!);
    const postgresCpuSeconds = cpuBetween(pgBefore, childrenCpu(options.postmaster));

    const samples = parseMetrics(text);
    // The gauge is set right after the last batch committed: a finer end than the poll.
    const lastApplied = Math.max(0, ...samples.filter((s) => s.name === 'cdc_sync_last_applied_timestamp_seconds' && (options.counts?.(s.labels.stream ?? '') ?? true)).map((s) => s.value));
    const seconds = lastApplied * 1000 - started > 0 ? (lastApplied * 1000 - started) / 1000 : (Date.now() - started) / 1000;
    const h = histogram(samples, 'cdc_sync_batch_duration_seconds');

    child.kill('SIGINT');
    const exit = await Promise.race([exited, delay(STOP_TIMEOUT_MS).then(() => null)]);
    if (!exit) throw new Error(`cdc-sync did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGINT:\n${log.tail()}`);
    if (exit.code !== 0) throw new Error(`cdc-sync exited with code ${exit.code} (signal ${exit.signal}) after SIGINT:\n${log.tail()}`);

    return {
      batchSize: options.batchSize ?? null,
      changes: options.changes,
      seconds,
      startupSeconds,
      changesPerSecond: options.changes / seconds,
      batches: h.count,
      meanBatchSeconds: h.count > 0 ? h.sum / h.count : 0,
      p50: quantile(h, 0.5),
      p99: quantile(h, 0.99),
      peakRssBytes,
      childCpuSeconds,
      postgresCpuSeconds,
      exitCode: exit.code,
      exitSignal: exit.signal,
    };
  } finally {
    if (!hasExited) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}

/** Keeps the child's last log lines (JSON on stderr) and finds the port it listens on. */
function childLog(child: ChildProcess): { port: Promise<number>; tail: () => string } {
  const lines: string[] = [];
  let buffered = '';
  let resolvePort!: (port: number) => void;
  const port = new Promise<number>((resolve) => (resolvePort = resolve));
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (data: string) => {
    buffered += data;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (lines.length > 40) lines.shift();
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number; level?: number };
        if (entry.msg === 'cdc-sync running' && typeof entry.port === 'number') resolvePort(entry.port);
        if ((entry.level ?? 0) >= 40) process.stderr.write(`  [cdc-sync] ${line}\n`);
      } catch {
        // not JSON: keep it for the tail
      }
    }
  });
  return { port, tail: () => [...lines, buffered].join('\n') };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
