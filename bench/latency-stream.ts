/**
 * The latency benchmark's cdc-sync process (bench/latency.ts): started as
 * users start it, waited for until its stream is connected and past its
 * initial copy, measured while idle, stopped with SIGINT.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stringify } from 'yaml';
import { freePort, logTail } from '../test/support/free-port.js';
import { withClient } from './backlog.js';
import { SHIPPED_NODE_ARGS } from './node-args.js';
import { parseMetrics, sum, type Sample } from './prometheus.js';
import { childrenCpu, cpuSeconds } from './proc.js';

const CLI = fileURLToPath(new URL('../cdc-sync.mjs', import.meta.url));
export const STREAM = 'latency';
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;
/**
 * Before the window: the source's idle polling has backed off to its
 * longest pause, and every backend has flushed the pg_stat_database
 * counters of the latency run (the cross-check). PostgreSQL 15 flushes a
 * backend's counters at the end of a transaction at most once a second;
 * what a burst leaves pending (the sink's last batches) is flushed once the
 * backend has been idle for 10 s (PGSTAT_IDLE_INTERVAL).
 */
const SETTLE_MS = 11_000;
/** After the window, before the second read of pg_stat_database: a steady poller's counters lag at most ~1 s. */
const FLUSH_MS = 1500;

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface CdcSync {
  pid: number;
  hasExited: () => boolean;
  logTail: () => string;
  metrics: () => Promise<Sample[] | null>;
  /** SIGINT; the exit code. */
  stop: () => Promise<number | null>;
}

/**
 * `cdc-sync run` with the default configuration: only what a stream must
 * name, plus the HTTP port the benchmark reads. The built CLI as a child
 * process with the shipped Node.js options; its log goes to a file in
 * `workDir` (also its working directory, for anything it keeps in ./data).
 */
export async function startCdcSync(workDir: string, label: string, source: { type: string; url: string }, sinkUrl: string, table: { source: string; target: string }): Promise<CdcSync> {
  const port = await freePort();
  const config = join(workDir, `${label}.yaml`);
  writeFileSync(config, stringify({ streams: [{ name: STREAM, source, sink: { type: 'postgres', url: sinkUrl }, tables: [table] }], http: { port, host: '127.0.0.1' } }));
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The older scripts' variables and the caller's NODE_OPTIONS must not change the default configuration.
  for (const name of Object.keys(env)) if (/^(SYNC_|REVERSE_SYNC_)/.test(name) || name === 'NODE_OPTIONS') delete env[name];
  const logFile = join(workDir, `${label}.log`);
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, [...SHIPPED_NODE_ARGS, CLI, 'run', '--config', config], { env, cwd: workDir, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = false;
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      resolve(code);
    }),
  );
  return {
    pid: child.pid!,
    hasExited: () => exited,
    logTail: () => logTail(logFile),
    metrics: async () => {
      try {
        return parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text());
      } catch {
        return null;
      }
    },
    stop: async () => {
      if (!exited) child.kill('SIGINT');
      const code = await Promise.race([exit, delay(STOP_TIMEOUT_MS).then(() => 'timeout' as const)]);
      if (code !== 'timeout') return code;
      child.kill('SIGKILL');
      throw new Error(`cdc-sync did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGINT:\n${logTail(logFile)}`);
    },
  };
}

/**
 * Waits until the stream runs before any change exists: /metrics answers,
 * `cdc_sync_connected` is 1 (source and sink), the target holds a
 * checkpoint that no longer carries the initial copy (a copy in progress is
 * a JSON position; the copy of the empty table is done), and for a WAL
 * source the replication slot is in use. Returns the seconds it took.
 */
export async function waitReady(sync: CdcSync, sinkUrl: string, slotDatabase?: string): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (sync.hasExited()) throw new Error(`cdc-sync exited before its stream was ready:\n${sync.logTail()}`);
    const samples = await sync.metrics();
    const connected = samples?.some((s) => s.name === 'cdc_sync_connected' && s.labels.stream === STREAM && s.value === 1) ?? false;
    if (connected) {
      const ready = await withClient(sinkUrl, async (c) => {
        const { rows } = await c.query<{ position: string | null; slot: boolean }>(
          `SELECT (SELECT position FROM cdc_sync.checkpoints WHERE stream = $1) AS position,
                  $2::text IS NULL OR EXISTS (SELECT 1 FROM pg_replication_slots WHERE database = $2 AND active) AS slot`,
          [STREAM, slotDatabase ?? null],
        ).catch(() => ({ rows: [{ position: null, slot: false }] })); // no checkpoint table yet
        return rows[0]!.position !== null && !rows[0]!.position.startsWith('{') && rows[0]!.slot;
      });
      if (ready) return (performance.now() - started) / 1000;
    }
    if (performance.now() - started > READY_TIMEOUT_MS) throw new Error(`the stream was not ready within ${READY_TIMEOUT_MS / 1000} s:\n${sync.logTail()}`);
    await delay(100);
  }
}

export interface IdleCost {
  /** The window. */
  seconds: number;
  /** Statements per second cdc-sync sent to each database (the server's statement log); null without one (a SQLite source). */
  source: number | null;
  target: number;
  /** Transactions (committed + rolled back) per second of each database by pg_stat_database: the cross-check. */
  sourceXacts: number | null;
  targetXacts: number;
  /** CPU as a share of one CPU: the cdc-sync process, the PostgreSQL backends of its sessions, every PostgreSQL process. */
  cdcCpu: number;
  sessionsCpu: number;
  postgresCpu: number;
}

/** The server's log prefix while idle cost is measured: the database of each statement. */
const LOG_PREFIX = '%m [%p] db=%d ';
const LOGGED = /^.* db=(\S*) LOG: {2}(?:statement|execute [^:]*):/;

/** Statements logged per database in `logFile` between two byte offsets. */
function statementsLogged(logFile: string, from: number, to: number): Map<string, number> {
  const buffer = Buffer.alloc(Math.max(0, to - from));
  const fd = openSync(logFile, 'r');
  try {
    readSync(fd, buffer, 0, buffer.length, from);
  } finally {
    closeSync(fd);
  }
  const counts = new Map<string, number>();
  for (const line of buffer.toString('utf8').split('\n')) {
    const db = LOGGED.exec(line)?.[1];
    if (db !== undefined) counts.set(db, (counts.get(db) ?? 0) + 1);
  }
  return counts;
}

/**
 * The cost of an idle stream over `seconds`; the benchmark must have closed
 * its own connections to both databases and stays away from them.
 *
 * Statements are counted in the server's log (log_statement = all, set for
 * the window only, by the `postgres` database): every statement cdc-sync
 * sends, as sent. pg_stat_database is read too (from the `postgres`
 * database), as the cross-check, but PostgreSQL 15 under-counts an idle
 * stream there: a backend flushes its transaction counters only with those
 * of a table it touched, so transactions that touch none (`SELECT 1`, a
 * query of pg_replication_slots) show up only at its next such transaction
 * or its exit. For the rest, each backend flushes at most once a second, so
 * both reads lag alike and the rate is taken over the time between them.
 */
export async function measureIdle(adminUrl: string, logFile: string, databases: { source: string | null; target: string }, pid: number, postmaster: number, seconds: number): Promise<IdleCost> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const logging = async (on: boolean) => {
    await admin.query(on ? `ALTER SYSTEM SET log_statement = 'all'` : 'ALTER SYSTEM RESET log_statement');
    await admin.query(on ? `ALTER SYSTEM SET log_line_prefix = '${LOG_PREFIX}'` : 'ALTER SYSTEM RESET log_line_prefix');
    await admin.query('SELECT pg_reload_conf()');
  };
  try {
    const names = [databases.source, databases.target].filter((d): d is string => d !== null);
    const counts = async () => {
      const { rows } = await admin.query<{ datname: string; n: string }>(`SELECT datname, (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = ANY($1)`, [names]);
      return { at: performance.now(), n: new Map(rows.map((r) => [r.datname, Number(r.n)])) };
    };
    // A backend reloads the configuration before its next statement: the settling wait is more than enough.
    await logging(true);
    await delay(SETTLE_MS);
    // Every backend now connected to those databases is cdc-sync's (the walsender of a WAL source included).
    const sessions = (await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = ANY($1)`, [names])).rows.map((r) => r.pid);
    const before = await counts();
    const cpuBefore = { cdc: cpuSeconds(pid), pg: childrenCpu(postmaster), at: performance.now(), log: statSync(logFile).size };
    await delay(seconds * 1000);
    const cpuAfter = { cdc: cpuSeconds(pid), pg: childrenCpu(postmaster), at: performance.now(), log: statSync(logFile).size };
    await delay(FLUSH_MS);
    const after = await counts();
    const window = (cpuAfter.at - cpuBefore.at) / 1000;
    const logged = statementsLogged(logFile, cpuBefore.log, cpuAfter.log);
    const statements = (db: string) => (logged.get(db) ?? 0) / window;
    const xacts = (db: string) => ((after.n.get(db) ?? 0) - (before.n.get(db) ?? 0)) / ((after.at - before.at) / 1000);
    let postgres = 0;
    let own = 0;
    for (const [p, cpu] of cpuAfter.pg) {
      const used = cpu - (cpuBefore.pg.get(p) ?? 0);
      postgres += used;
      if (sessions.includes(p)) own += used;
    }
    return {
      seconds: window,
      source: databases.source === null ? null : statements(databases.source),
      target: statements(databases.target),
      sourceXacts: databases.source === null ? null : xacts(databases.source),
      targetXacts: xacts(databases.target),
      cdcCpu: (cpuAfter.cdc - cpuBefore.cdc) / window,
      sessionsCpu: own / window,
      postgresCpu: postgres / window,
    };
  } finally {
    // Statements of the next measurement's writer and sink are not logged.
    await logging(false).catch(() => undefined);
    await admin.end();
  }
}

/** Changes cdc-sync dead-lettered so far (must stay 0). */
export async function failedChanges(sync: CdcSync): Promise<number> {
  const samples = await sync.metrics();
  if (!samples) throw new Error(`cdc-sync's /metrics did not answer:\n${sync.logTail()}`);
  return sum(samples, 'cdc_sync_events_failed_total');
}
