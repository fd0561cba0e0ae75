import { fileURLToPath } from 'node:url';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { BacklogMix } from './backlog.js';
import { SHIPPED_NODE_ARGS } from './node-args.js';
import type { DrainResult } from './drain.js';
import type { NaiveResult } from './naive.js';
import type { Quantile } from './prometheus.js';

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  node: string;
  postgres: string;
}

export function machine(postgresVersion: string): Machine {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: postgresVersion,
  };
}

export interface Report {
  date: Date;
  machine: Machine;
  changes: number;
  mix: BacklogMix;
  backlogSeconds: number;
  main: DrainResult;
  sweep: DrainResult[];
  naive: NaiveResult;
  /** 1/5/15-minute load average when the benchmark started (counts any earlier work). */
  loadBefore: number[];
  /** Other processes that were busy (name and CPU share) during the reported drain and during the naive loop. */
  neighbours: { drain: string[]; naive: string[] };
  /** The default configuration's batch.maxSize. */
  defaultBatchSize: number;
  /** Rows per source transaction (BENCH_TX_ROWS); null: one transaction per statement of 8,000 / 1,500 / 500 rows. */
  transactionRows: number | null;
  /** Extra Node.js options the cdc-sync child ran with (BENCH_NODE_ARGS) besides SHIPPED_NODE_ARGS; empty for the shipped behaviour. */
  nodeArgs: string[];
}

export const TARGETS = { changesPerSecond: 20_000, ratio: 10, peakRssMb: 200 };

const mb = (bytes: number) => bytes / (1024 * 1024);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (seconds: number) => `${(seconds * 1000).toFixed(1)} ms`;

function quantileText(q: Quantile | null): string {
  if (!q) return 'n/a';
  const upper = Number.isFinite(q.upper) ? `${q.upper * 1000} ms` : '+Inf';
  return `≈ ${ms(q.estimate)} (bucket ${q.lower * 1000}–${upper})`;
}

export function ratio(report: Report): number {
  return report.main.changesPerSecond / report.naive.changesPerSecond;
}

export function checks(report: Report) {
  return [
    { name: 'throughput', target: `≥ ${int(TARGETS.changesPerSecond)} changes/s`, actual: `${int(report.main.changesPerSecond)} changes/s`, pass: report.main.changesPerSecond >= TARGETS.changesPerSecond },
    { name: 'vs. naive loop', target: `≥ ${TARGETS.ratio}×`, actual: `${ratio(report).toFixed(1)}×`, pass: ratio(report) >= TARGETS.ratio },
    { name: 'peak RSS', target: `< ${TARGETS.peakRssMb} MB`, actual: `${mb(report.main.peakRssBytes).toFixed(1)} MB`, pass: mb(report.main.peakRssBytes) < TARGETS.peakRssMb },
  ];
}

const batchText = (r: DrainResult, report: Report) => (r.batchSize === null ? `default (${report.defaultBatchSize})` : String(r.batchSize));

/** The console summary. */
export function consoleTable(report: Report): string {
  const r = report.main;
  const rows: Array<[string, string]> = [
    ['changes drained', int(r.changes)],
    ['batch.maxSize', batchText(r, report)],
    ['drain time (incl. start-up)', `${r.seconds.toFixed(2)} s (start-up ${r.startupSeconds.toFixed(2)} s)`],
    ['throughput', `${int(r.changesPerSecond)} changes/s`],
    ['batches', `${int(r.batches)} (mean ${ms(r.meanBatchSeconds)})`],
    ['batch latency p50', quantileText(r.p50)],
    ['batch latency p99', quantileText(r.p99)],
    ['peak RSS (VmHWM)', `${mb(r.peakRssBytes).toFixed(1)} MB`],
    ['CPU cdc-sync / PostgreSQL', `${r.childCpuSeconds.toFixed(1)} s / ${r.postgresCpuSeconds.toFixed(1)} s`],
    ['exit after SIGINT', `code ${r.exitCode}`],
    ['naive loop', `${int(report.naive.changesPerSecond)} changes/s (${int(report.naive.changes)} changes in ${report.naive.seconds.toFixed(1)} s)`],
    ['ratio', `${ratio(report).toFixed(1)}×`],
    ['busy neighbours (drain)', busy(report.neighbours.drain)],
    ['busy neighbours (naive)', busy(report.neighbours.naive)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  lines.push('');
  for (const c of checks(report)) lines.push(`  ${c.pass ? 'PASS' : 'FAIL'}  ${c.name.padEnd(16)} ${c.actual.padEnd(18)} target ${c.target}`);
  if (report.sweep.length > 1) {
    lines.push('', '  batch.maxSize sweep:');
    for (const s of report.sweep) {
      lines.push(`    ${batchText(s, report).padStart(12)}  ${int(s.changesPerSecond).padStart(8)} changes/s  p50 ${quantileText(s.p50)}  p99 ${quantileText(s.p99)}  RSS ${mb(s.peakRssBytes).toFixed(1)} MB`);
    }
  }
  return lines.join('\n');
}

function busy(list: string[]): string {
  return list.length === 0 ? 'none' : list.join(', ');
}

export const SECTION = '## Change-log → PostgreSQL backlog drain';

export function markdownSection(report: Report): string {
  const r = report.main;
  const m = report.machine;
  const sweepRows = report.sweep.length > 1
    ? [
        '',
        `batch.maxSize sweep on the same backlog (${int(report.changes)} changes, target emptied between runs):`,
        '',
        '| batch.maxSize | changes/s | p50 batch | p99 batch | mean batch | peak RSS |',
        '|---:|---:|---:|---:|---:|---:|',
        ...report.sweep.map(
          (s) =>
            `| ${batchText(s, report)} | ${int(s.changesPerSecond)} | ${s.p50 ? ms(s.p50.estimate) : 'n/a'} | ${s.p99 ? ms(s.p99.estimate) : 'n/a'} | ${ms(s.meanBatchSeconds)} | ${mb(s.peakRssBytes).toFixed(1)} MB |`,
        ),
      ]
    : [];
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');
  return [
    SECTION,
    '',
    `Recorded ${report.date.toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench\` (bench/run.ts).`,
    '',
    '**Machine**: ' +
      `${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB memory, ${m.kernel}, ` +
      `Node.js ${m.node}, ${m.postgres}.`,
    '',
    '**Workload**: a backlog of ' +
      `${int(report.changes)} changes in \`cdc_sync.changes\` of a private PostgreSQL cluster, made by set-based writes to ` +
      `\`src.public.items\` (id bigint, name text, price numeric(12,2), qty int, updated_at timestamptz, payload text of 64 chars) ` +
      `through the change-log trigger: ${int(report.mix.inserts)} inserts, ${int(report.mix.updates)} updates, ${int(report.mix.deletes)} deletes ` +
      `(${((report.mix.inserts / report.changes) * 100).toFixed(0)} / ${((report.mix.updates / report.changes) * 100).toFixed(0)} / ${((report.mix.deletes / report.changes) * 100).toFixed(0)} %), ` +
      (report.transactionRows === null
        ? 'in statements of 8,000 / 1,500 / 500 rows, each its own transaction. '
        : `in transactions of at most ${int(report.transactionRows)} rows (BENCH_TX_ROWS). `) +
      `Making the backlog took ${report.backlogSeconds.toFixed(1)} s (not part of the result). ` +
      '`cdc-sync run` (the built CLI, a child process) then drains it: source `postgres-changelog` on `src`, sink `postgres` on `dst` ' +
      `(same table, no triggers), ${r.batchSize === null ? `the default configuration (no \`batch\` block: \`maxSize\` ${report.defaultBatchSize})` : `\`batch: { maxSize: ${r.batchSize} }\``}, checkpoints in the sink's transaction` +
      `, Node.js options as shipped (\`${SHIPPED_NODE_ARGS.join(' ')}\`)` +
      (report.nodeArgs.length > 0 ? ` plus \`${report.nodeArgs.join(' ')}\`. ` : '. ') +
      'The run ends when `cdc_sync_events_applied_total` reaches the backlog size; `dst.items` is then checked to equal `src.items` ' +
      '(row count and md5 of all rows in id order), and the process is stopped with SIGINT and must exit 0.',
    '',
    '| Result | Value |',
    '|---|---:|',
    `| throughput (backlog ÷ drain time, start-up included) | **${int(r.changesPerSecond)} changes/s** |`,
    `| drain time | ${r.seconds.toFixed(2)} s (of which start-up ${r.startupSeconds.toFixed(2)} s) |`,
    `| batches | ${int(r.batches)} |`,
    `| batch latency p50 | ${quantileText(r.p50)} |`,
    `| batch latency p99 | ${quantileText(r.p99)} |`,
    `| batch latency mean (exact: histogram sum ÷ count) | ${ms(r.meanBatchSeconds)} |`,
    `| peak RSS of the cdc-sync process (VmHWM) | ${mb(r.peakRssBytes).toFixed(1)} MB |`,
    `| CPU time: cdc-sync / PostgreSQL backends | ${r.childCpuSeconds.toFixed(1)} s / ${r.postgresCpuSeconds.toFixed(1)} s |`,
    `| exit code after SIGINT | ${r.exitCode} |`,
    `| naive loop (one upsert/delete per change and round trip) | ${int(report.naive.changesPerSecond)} changes/s (first ${int(report.naive.changes)} changes, ${report.naive.seconds.toFixed(1)} s) |`,
    `| ratio cdc-sync ÷ naive | **${ratio(report).toFixed(1)}×** |`,
    ...sweepRows,
    '',
    '| Target | Required | Measured | |',
    '|---|---|---|---|',
    ...checks(report).map((c) => `| ${c.name} | ${c.target} | ${c.actual} | ${c.pass ? 'pass' : '**FAIL**'} |`),
    '',
    'Notes:',
    '',
    '- Batch latency is `cdc_sync_batch_duration_seconds` (mapping, no-op filter, coalescing and the sink transaction of one batch) ' +
      'read from the process\'s `/metrics`. p50/p99 are **approximated from the histogram buckets** by linear interpolation inside the bucket ' +
      '(as PromQL `histogram_quantile` does); the bucket is given, only the mean is exact.',
    '- The naive baseline reads the same change rows in order (pages of 1,000) and writes each with its own autocommit ' +
      '`INSERT … ON CONFLICT (id) DO UPDATE` or `DELETE`, one round trip per change, with node `pg`, into an empty copy of the table; ' +
      'it runs before the drain, on a quiet server, over the first changes of the backlog (up to 20,000 or 20 s; the same 80/15/5 mix). It does not mark rows as synced, so the older scripts are slower still.',
    '- The cluster is the throw-away test cluster (test/support/postgres-cluster.ts): `fsync=off`, `synchronous_commit=off`, ' +
      '`full_page_writes=off`, `shared_buffers=128MB`. Commits are therefore cheap, which favours the naive loop (a commit per change) far more than cdc-sync (a commit per batch).',
    `- Everything (PostgreSQL, cdc-sync, the benchmark) shares the ${m.cpus} CPUs, and another engineer runs the test suite on this machine ` +
      `(its own PostgreSQL cluster and cdc-sync processes), so numbers may be lower than on an idle machine. Load average (1/5/15 min) at the start: ${load(report.loadBefore)}. ` +
      `Other processes using ≥ 10 % of a CPU during the reported drain: ${busy(report.neighbours.drain)}; during the naive loop: ${busy(report.neighbours.naive)}.`,
    '',
    'Reproduce: `npm run bench` (builds, then runs `node --expose-gc dist/bench/run.js`; needs the PostgreSQL server binaries, ' +
      'e.g. Debian `postgresql`). Environment: `BENCH_CHANGES` (backlog size, default 1000000), ' +
      '`BENCH_BATCH_SIZES=500,1000,2000,5000` (after the default configuration, also drain with each batch.maxSize and record a sweep), `BENCH_NAIVE_CHANGES` / `BENCH_NAIVE_SECONDS` ' +
      '(naive sample, default 20000 / 20), `BENCH_CPU_PROF=dir` (write a V8 CPU profile of cdc-sync there), `BENCH_NODE_ARGS` (extra Node.js options for cdc-sync, e.g. `--max-old-space-size=96`), `BENCH_WRITE=0` (do not touch BENCHMARKS.md).',
    '',
  ].join('\n');
}

/** Replaces this benchmark's section of BENCHMARKS.md (or appends it), keeping every other section. */
export function writeSection(file: string, section: string, title: string = SECTION): void {
  const header = '# Benchmarks\n\nRecorded results of `npm run bench`. Each benchmark owns one `##` section; a run replaces only its own.\n';
  const text = existsSync(file) ? readFileSync(file, 'utf8') : header;
  const start = text.indexOf(`${title}\n`);
  let next: string;
  if (start < 0) {
    next = `${text.trimEnd()}\n\n${section}`;
  } else {
    const after = text.indexOf('\n## ', start + title.length);
    next = `${text.slice(0, start)}${section}${after < 0 ? '' : `\n${text.slice(after + 1)}`}`;
  }
  writeFileSync(file, `${next.trimEnd()}\n`);
}

/** Runs a benchmark's main: its number is the exit code; a throw prints its stack and exits 2. */
export function runBenchmark(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(2);
    },
  );
}

/** Ctrl-C (or SIGTERM) of a benchmark still runs `stop` (the cluster goes away; a child cdc-sync gets the signal too). */
export function stopOnSignal(stop: () => Promise<void>, say: (line: string) => void): void {
  const onSignal = (signal: NodeJS.Signals) => {
    say(`\n${signal}: stopping the cluster`);
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/** A positive whole number from the environment (`_` allowed as a separator), or `fallback` when unset. */
export function envInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const value = Number(text.replace(/_/g, ''));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return value;
}

/** Prints a benchmark's section and records it in BENCHMARKS.md (unless BENCH_WRITE=0). */
export function publishSection(section: string, title: string): void {
  process.stdout.write(`${section}\n`);
  if (process.env.BENCH_WRITE !== '0') writeSection(fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url)), section, title);
}
