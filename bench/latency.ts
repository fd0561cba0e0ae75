/**
 * `npm run bench:latency`: end-to-end latency at a steady 1,000 changes/s
 * and the cost of an idle stream, per source type, with the default
 * configuration (no batch, readLimit, pollIntervalMs, idleIntervalMs or
 * bufferSize settings), into sink `postgres`.
 *
 * Per source type, on fresh databases of one private cluster
 * (track_commit_timestamp on): `cdc-sync run` starts on the empty table;
 * once its stream is connected and past the initial copy, a writer inserts
 * one row per transaction at BENCH_LATENCY_RATE rows/s (1000) for 5 s of
 * warm-up and BENCH_LATENCY_SECONDS (30) measured. A row's latency is the
 * commit timestamp of its copy on the target minus its commit timestamp on
 * the source: both databases are of one cluster, so one clock. Then, the
 * writer stopped and everything applied, the stream idles for
 * BENCH_IDLE_SECONDS (30): statements per second it sends to the source and
 * the target (the server's statement log; pg_stat_database's transaction
 * counts as a cross-check), CPU of the cdc-sync process and of PostgreSQL.
 *
 * Environment: BENCH_LATENCY_SECONDS, BENCH_LATENCY_RATE, BENCH_IDLE_SECONDS,
 * BENCH_LATENCY_SOURCES (default all three), BENCH_LATENCY_ASYNC_COMMIT=1
 * (the writer commits asynchronously, as the test cluster does by default),
 * BENCH_WRITE=0 (do not touch BENCHMARKS.md). Exit 0 when every target is
 * met, 1 when one is not, 2 on error.
 */
import os from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { changelogSetupSql } from '../src/cdc/postgres/changelog-setup.js';
import { applySqliteChangelogSetup } from '../src/db/sqlite/changelog-setup.js';
import type { PostgresCluster } from '../test/support/postgres-cluster.js';
import { withClient } from './backlog.js';
import { checks, ms, section, SOURCES, summary, TITLE, WARMUP_SECONDS, type Run, type SourceType } from './latency-report.js';
import { failedChanges, measureIdle, startCdcSync, waitReady, type CdcSync } from './latency-stream.js';
import { percentiles, PG_ITEMS_SQL, SQLITE_ITEMS_SQL, writePostgres, writeSqlite } from './latency-writer.js';
import { NeighbourWatch, postmasterPid } from './proc.js';
import { envInt, publishSection, runBenchmark } from './report.js';
import { benchWorkspace } from './workspace.js';

/** After the writer's last row: longer than this until the target has every row fails the run. */
const CATCH_UP_TIMEOUT_MS = 120_000;

const say = (text: string) => process.stdout.write(`${text}\n`);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
/** `-c synchronous_commit=on`: see the report's note; empty keeps the cluster's setting. */
const writerOptions = () => (process.env.BENCH_LATENCY_ASYNC_COMMIT === '1' ? '' : '-c synchronous_commit=on');

/** Per-row latency in ms of rows with id > `after`: target commit − source commit (PostgreSQL) or − updated_at (SQLite). */
async function latencies(source: SourceType, srcUrl: string, dstUrl: string, after: number): Promise<number[]> {
  if (source === 'sqlite-changelog') {
    return withClient(dstUrl, async (c) =>
      (await c.query<{ ms: number }>(`SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin) - updated_at) * 1000)::float8 AS ms FROM public.items WHERE id > $1`, [after])).rows.map((r) => r.ms),
    );
  }
  const commits = (url: string) =>
    withClient(url, async (c) => {
      const { rows } = await c.query<{ id: string; ms: number }>(`SELECT id::text, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::float8 AS ms FROM public.items WHERE id > $1`, [after]);
      return new Map(rows.map((r) => [Number(r.id), r.ms]));
    });
  const [src, dst] = await Promise.all([commits(srcUrl), commits(dstUrl)]);
  return [...src].map(([id, at]) => {
    const applied = dst.get(id);
    if (applied === undefined) throw new Error(`row ${id} is missing on the target`);
    return applied - at;
  });
}

async function untilApplied(dstUrl: string, total: number, sync: CdcSync): Promise<number> {
  const started = performance.now();
  for (;;) {
    const n = await withClient(dstUrl, async (c) => Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM public.items')).rows[0]!.n));
    if (n >= total) return (performance.now() - started) / 1000;
    if (sync.hasExited()) throw new Error(`cdc-sync exited with ${n} of ${total} rows applied:\n${sync.logTail()}`);
    if (performance.now() - started > CATCH_UP_TIMEOUT_MS) throw new Error(`the target had ${n} of ${total} rows ${CATCH_UP_TIMEOUT_MS / 1000} s after the writer stopped:\n${sync.logTail()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Drops the databases and their logical slots; a slot stays active for a moment after its walsender's client went away. */
async function dropDatabases(cluster: PostgresCluster, names: string[]): Promise<void> {
  await withClient(cluster.url('postgres'), async (c) => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await c.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = ANY($1)`, [names]);
        break;
      } catch (error) {
        if (attempt >= 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    for (const db of names) await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });
}

async function measure(cluster: PostgresCluster, source: SourceType, work: string, rate: number, seconds: number, idleSeconds: number): Promise<Run> {
  const prefix = source.replace(/-/g, '_');
  const [srcDb, dstDb] = [`lat_${prefix}_src`, `lat_${prefix}_dst`];
  const postgresSource = source !== 'sqlite-changelog';
  await withClient(cluster.url('postgres'), async (c) => {
    for (const db of postgresSource ? [srcDb, dstDb] : [dstDb]) await c.query(`CREATE DATABASE ${db}`);
  });
  const [srcUrl, dstUrl] = [cluster.url(srcDb), cluster.url(dstDb)];
  await withClient(dstUrl, (c) => c.query(PG_ITEMS_SQL));
  const sqlitePath = join(work, 'source.db');
  if (postgresSource) {
    await withClient(srcUrl, async (c) => {
      await c.query(PG_ITEMS_SQL);
      // The change-log set-up exactly as `cdc-sync init-sql` prints it; a WAL source makes its publication and slot itself.
      if (source === 'postgres-changelog') await c.query(changelogSetupSql(['public.items']));
    });
  } else {
    const db = new Database(sqlitePath);
    db.pragma('journal_mode = WAL');
    db.exec(SQLITE_ITEMS_SQL);
    applySqliteChangelogSetup(db, ['items']);
    db.close();
  }

  const sync = await startCdcSync(work, prefix, { type: source, url: postgresSource ? srcUrl : `sqlite:${sqlitePath}` }, dstUrl, { source: postgresSource ? 'public.items' : 'items', target: 'public.items' });
  try {
    const readySeconds = await waitReady(sync, dstUrl, source === 'postgres-wal' ? srcDb : undefined);
    say(`${source}: stream ready after ${readySeconds.toFixed(1)} s; writing ${int(rate)} rows/s for ${WARMUP_SECONDS} + ${seconds} s…`);
    const watch = new NeighbourWatch();
    watch.own(sync.pid);
    const warmRows = rate * WARMUP_SECONDS;
    const total = warmRows + rate * seconds;
    const pacing = postgresSource ? await writePostgres(srcUrl, rate, total, writerOptions()) : await writeSqlite(sqlitePath, rate, total);
    const catchUpSeconds = await untilApplied(dstUrl, total, sync);
    const latency = percentiles(await latencies(source, srcUrl, dstUrl, warmRows));
    say(`  p50 ${ms(latency.p50)}, p99 ${ms(latency.p99)}, max ${ms(latency.max)} over ${int(latency.rows)} rows; idling ${idleSeconds} s…`);

    // Nothing left for autovacuum to do in the window (its work would count in PostgreSQL's CPU and pg_stat_database). Only the
    // written tables: a whole-database VACUUM is a transaction per catalog table, each of which a walsender then decodes.
    await withClient(dstUrl, (c) => c.query('VACUUM ANALYZE public.items'));
    if (postgresSource) await withClient(srcUrl, (c) => c.query(`VACUUM ANALYZE public.items${source === 'postgres-changelog' ? ', cdc_sync.changes' : ''}`));
    const idle = await measureIdle(cluster.url('postgres'), join(cluster.dataDir, 'server.log'), { source: postgresSource ? srcDb : null, target: dstDb }, sync.pid, postmasterPid(cluster.dataDir), idleSeconds);
    const neighbours = watch.stop();
    const failed = await failedChanges(sync);
    if (failed > 0) throw new Error(`${failed} changes were dead-lettered:\n${sync.logTail()}`);
    const exit = await sync.stop();
    if (exit !== 0) throw new Error(`cdc-sync exited with ${exit} after SIGINT:\n${sync.logTail()}`);
    return { source, latency, pacing, readySeconds, catchUpSeconds, idle, neighbours };
  } finally {
    if (!sync.hasExited()) await sync.stop().catch(() => undefined);
    // Done with this pair: neither it nor its slot runs (autovacuum, decoding) during the next measurement.
    // Best effort: a failure here must not hide the measurement's own error (the cluster goes away at the end anyway).
    await dropDatabases(cluster, postgresSource ? [srcDb, dstDb] : [dstDb]).catch((error: unknown) => say(`  (could not drop ${srcDb}/${dstDb}: ${String(error)})`));
  }
}

async function main(): Promise<number> {
  const seconds = envInt('BENCH_LATENCY_SECONDS', 30);
  const rate = envInt('BENCH_LATENCY_RATE', 1000);
  const idleSeconds = envInt('BENCH_IDLE_SECONDS', 30);
  const sources = (process.env.BENCH_LATENCY_SOURCES ?? SOURCES.join(',')).split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    if (!(SOURCES as readonly string[]).includes(s)) throw new Error(`BENCH_LATENCY_SOURCES: ${s} is not one of ${SOURCES.join(', ')}`);
    return s as SourceType;
  });
  const loadBefore = os.loadavg();
  const workspace = benchWorkspace('latency', say);
  const work = workspace.dir;
  try {
    say(`cdc-sync latency at ${int(rate)} changes/s and idle cost, default configuration (load average ${loadBefore.map((l) => l.toFixed(2)).join(' / ')})`);
    const cluster = await workspace.start({ extraSettings: { track_commit_timestamp: 'on' } });
    const postgres = await withClient(cluster.url('postgres'), async (c) => (await c.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v);
    const runs: Run[] = [];
    for (const source of sources) runs.push(await measure(cluster, source, work, rate, seconds, idleSeconds));

    say('');
    say(summary(runs));
    say('');
    publishSection(section(runs, { rate, seconds, idleSeconds, asyncCommit: writerOptions() === '', loadBefore, postgres }), TITLE);
    return checks(runs).every((c) => c.pass) ? 0 : 1;
  } finally {
    await workspace.stop();
  }
}

runBenchmark(main);
