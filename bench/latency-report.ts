/**
 * What bench/latency.ts measured, as targets, a console summary and its
 * section of BENCHMARKS.md.
 */
import type { IdleCost } from './latency-stream.js';
import type { Pacing, Percentiles } from './latency-writer.js';
import { machine } from './report.js';

export const TITLE = '## Latency and idle cost';
export const SOURCES = ['postgres-changelog', 'postgres-wal', 'sqlite-changelog'] as const;
export type SourceType = (typeof SOURCES)[number];
/** The issue's p99 targets: a WAL source streams; the change-log sources poll. */
const P99_TARGET_MS: Record<SourceType, number> = { 'postgres-changelog': 100, 'postgres-wal': 50, 'sqlite-changelog': 100 };
/** The issue's idle target: statements per second an idle stream sends to its source. */
const IDLE_TARGET = 1;
export const WARMUP_SECONDS = 5;

export interface Run {
  source: SourceType;
  latency: Percentiles;
  pacing: Pacing;
  readySeconds: number;
  /** From the writer's last commit until the target had every row. */
  catchUpSeconds: number;
  idle: IdleCost;
  neighbours: string[];
}

export interface Settings {
  rate: number;
  seconds: number;
  idleSeconds: number;
  /** The writer commits asynchronously (the test cluster's synchronous_commit = off) instead of PostgreSQL's default. */
  asyncCommit: boolean;
  loadBefore: number[];
  postgres: string;
}

interface Check {
  name: string;
  target: string;
  actual: string;
  pass: boolean;
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
export const ms = (n: number) => `${n.toFixed(1)} ms`;
const pct = (share: number) => `${(share * 100).toFixed(2)} %`;
const rate = (n: number | null) => (n === null ? 'n/a (SQLite)' : n.toFixed(2));
const busy = (runs: Run[]) => runs.map((r) => `${r.source}: ${r.neighbours.join(', ') || 'none'}`).join('; ');

export function checks(runs: Run[]): Check[] {
  const list: Check[] = runs.map((r) => {
    const target = P99_TARGET_MS[r.source];
    return { name: `${r.source} p99`, target: `< ${target} ms`, actual: ms(r.latency.p99), pass: r.latency.p99 < target };
  });
  for (const r of runs) {
    // A SQLite file counts no statements: nothing to check.
    if (r.idle.source === null) continue;
    list.push({ name: `${r.source} idle source`, target: `≤ ${IDLE_TARGET} statement/s`, actual: `${r.idle.source.toFixed(2)}/s`, pass: r.idle.source <= IDLE_TARGET });
  }
  return list;
}

/** The console summary: a line per source type, then PASS/FAIL per target. */
export function summary(runs: Run[]): string {
  const lines = runs.map((r) => {
    const i = r.idle;
    return (
      `  ${r.source.padEnd(19)} p50 ${ms(r.latency.p50).padStart(8)}  p99 ${ms(r.latency.p99).padStart(8)}  max ${ms(r.latency.max).padStart(8)}  rows ${int(r.latency.rows).padStart(6)}  ` +
      `idle: statements/s source ${i.source === null ? 'n/a (SQLite)' : `${rate(i.source)} (xacts ${rate(i.sourceXacts)})`}, target ${rate(i.target)} (xacts ${rate(i.targetXacts)}); ` +
      `CPU cdc-sync ${pct(i.cdcCpu)}, PostgreSQL ${pct(i.sessionsCpu)} (all ${pct(i.postgresCpu)})`
    );
  });
  lines.push(`  busy neighbours: ${busy(runs)}`, '');
  for (const c of checks(runs)) lines.push(`  ${c.pass ? 'PASS' : 'FAIL'}  ${c.name.padEnd(30)} ${c.actual.padEnd(10)} target ${c.target}`);
  return lines.join('\n');
}

function row(r: Run): string {
  const i = r.idle;
  return `| ${r.source} → postgres | ${ms(r.latency.p50)} | ${ms(r.latency.p99)} | ${ms(r.latency.max)} | ${int(r.latency.rows)} | ${rate(i.source)} | ${rate(i.target)} | ${pct(i.cdcCpu)} | ${pct(i.sessionsCpu)} (all: ${pct(i.postgresCpu)}) |`;
}

export function section(runs: Run[], s: Settings): string {
  const m = machine(s.postgres);
  const list = (f: (r: Run) => string, of = runs) => of.map((r) => `${f(r)} (${r.source})`).join(', ');
  return [
    TITLE,
    '',
    `Recorded ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:latency\` (bench/latency.ts).`,
    '',
    `**Machine**: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node.js ${m.node}, PostgreSQL ${m.postgres}. Load average at the start: ${s.loadBefore.map((l) => l.toFixed(2)).join(' / ')}.`,
    '',
    `**Workload**: per source type, on fresh databases of one private PostgreSQL cluster (the test cluster: fsync and synchronous_commit off; track_commit_timestamp on), \`cdc-sync run\` (the built CLI, a child process) with the **default configuration** (no \`batch\`, \`readLimit\`, \`pollIntervalMs\`, \`idleIntervalMs\` or \`bufferSize\`) streams \`items (id bigint primary key, name text, qty int, updated_at timestamptz)\` into an empty copy in a second database of the cluster (sink \`postgres\`). ` +
      `The stream starts on the empty table; once it is connected and its first checkpoint is committed, a writer (a connection of its own${s.asyncCommit ? ', asynchronous commits as the cluster has them' : ", `synchronous_commit = on`, PostgreSQL's default, as an application's session has it"}) inserts one row per transaction at ${int(s.rate)} rows/s on a timer schedule, ${WARMUP_SECONDS} s of warm-up then ${s.seconds} s measured. ` +
      "A row's latency is the commit timestamp of its copy on the target minus its commit timestamp on the source (`pg_xact_commit_timestamp(xmin)`; both databases are of one cluster, so one clock). " +
      "SQLite keeps no commit time: for sqlite-changelog the source time is the row's `updated_at`, the writer's clock (milliseconds) just before its insert (the file in WAL mode, `synchronous = NORMAL`). " +
      'p50, p99 and max are nearest-rank over the measured rows (warm-up rows excluded), once the target had every row. ' +
      `**Idle cost**: then, the writer stopped, everything applied and \`VACUUM ANALYZE\` run on the written tables (so autovacuum has nothing to do), the stream is left alone for ${s.idleSeconds} s (after 11 s to settle): the statements per second cdc-sync sends to the source and the target database (counted in the server's log, \`log_statement = all\` for the window only; the benchmark does not touch the two databases meanwhile), and CPU as % of one CPU of the cdc-sync process and of PostgreSQL (the backends of cdc-sync's sessions; in brackets every PostgreSQL process, background ones included).`,
    '',
    '| source → sink | p50 | p99 | max | rows measured | idle: statements/s source | idle: statements/s target | idle: CPU cdc-sync | idle: CPU PostgreSQL |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map(row),
    '',
    '| Target | Required | Measured | |',
    '|---|---|---|---|',
    ...checks(runs).map((c) => `| ${c.name} | ${c.target} | ${c.actual} | ${c.pass ? 'pass' : '**FAIL**'} |`),
    '',
    'Notes:',
    '',
    `- Cross-check, transactions per second by \`pg_stat_database\` (\`xact_commit + xact_rollback\`, two reads ${s.idleSeconds + 1.5} s apart): source ${list((r) => rate(r.idle.sourceXacts), runs.filter((r) => r.idle.sourceXacts !== null)) || 'n/a'}; target ${list((r) => rate(r.idle.targetXacts))}. ` +
      "They count a transaction where the log counts a statement, and PostgreSQL 15 flushes a backend's transaction counters only with those of a table it touched: a transaction that touches none (the sink's `SELECT 1` probe, a query of `pg_replication_slots`) is counted at the backend's next one that does, or at its exit, so they under-count an idle stream.",
    `- The writer kept its schedule: ${list((r) => `${int(r.pacing.rows / r.pacing.seconds)} rows/s, worst ${r.pacing.maxLateMs.toFixed(1)} ms late, ${int(r.pacing.lateWrites)} writes > 10 ms late`)}. ` +
      `After its last row the target had every row within ${list((r) => `${r.catchUpSeconds.toFixed(2)} s`)}; the stream was ready ${list((r) => `${r.readySeconds.toFixed(1)} s`)} after the start.`,
    ...(s.asyncCommit
      ? []
      : ['- The writer commits synchronously because a walsender sends only WAL that is flushed: with the cluster\'s `synchronous_commit = off` its commits wait for the WAL writer (`wal_writer_delay`, 200 ms), which is PostgreSQL\'s latency, not the stream\'s (`BENCH_LATENCY_ASYNC_COMMIT=1` measures it so). The change-log sources read committed rows and do not wait for the flush.']),
    `- CPU is read from /proc in 10 ms ticks (${((0.01 / s.idleSeconds) * 100).toFixed(2)} % of a CPU over the window). Everything (PostgreSQL, cdc-sync, the writer) shares the ${m.cpus} CPUs. Other processes using ≥ 10 % of a CPU from the writer's start to the idle window's end: ${busy(runs)}.`,
    '',
    'Reproduce: `npm run bench:latency` (needs the PostgreSQL server binaries). Environment: `BENCH_LATENCY_SECONDS` (default 30), `BENCH_LATENCY_RATE` (rows/s, default 1000), `BENCH_IDLE_SECONDS` (default 30), `BENCH_LATENCY_SOURCES` (default all three), `BENCH_LATENCY_ASYNC_COMMIT=1`, `BENCH_WRITE=0`.',
    '',
  ].join('\n');
}
