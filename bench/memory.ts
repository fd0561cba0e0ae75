/**
 * `npm run bench:memory`: the peak resident set of `cdc-sync run` as the
 * container image runs it (its NODE_OPTIONS, read from the Dockerfile) and
 * with the default configuration (no batch, readLimit or bufferSize
 * settings), while it drains a backlog of changes of a realistic table:
 *
 *   items (id bigint primary key, name text not null, price numeric(30,10),
 *          created timestamptz not null, attrs jsonb, blob bytea, note text)
 *
 * once per source type, each on fresh databases of one private cluster:
 * postgres-changelog → postgres and postgres-wal → postgres. The peak is the
 * process's VmHWM just before it is stopped (the polled VmRSS is printed
 * too); the target must then equal the source. One result line per source.
 *
 * Environment: BENCH_MEMORY_CHANGES (backlog size, default 1000000),
 * BENCH_MEMORY_SOURCES (default "postgres-changelog,postgres-wal"),
 * BENCH_MEMORY_NODE_OPTIONS (default: the Dockerfile's NODE_OPTIONS),
 * BENCH_MEMORY_TX (insert statement size, default 8000: with 1,500 updates and 500 deletes per 10,000 changes),
 * BENCH_NODE_ARGS (extra node options on cdc-sync's command line, for diagnosis: e.g. --trace-gc, which NODE_OPTIONS refuses),
 * BENCH_MEMORY_KEEP=1 (keep the work directory with cdc-sync's logs),
 * BENCH_WRITE=0 (do not touch BENCHMARKS.md).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { changelogSetupSql } from '../src/cdc/postgres/changelog-setup.js';
import type { PostgresCluster } from '../test/support/postgres-cluster.js';
import { makeBacklog, tableDigest, withClient, type BacklogMix, type BacklogShape } from './backlog.js';
import { parseMetrics, sum, type Sample } from './prometheus.js';
import { NeighbourWatch, cpuSeconds, memory } from './proc.js';
import { machine, writeSection, envInt, runBenchmark } from './report.js';
import { defaultBatchSize } from '../src/config/schema.js';
import { benchWorkspace, serverVersion } from './workspace.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'dist/cdc-sync.mjs');
const TITLE = '## Peak memory with the image\'s NODE_OPTIONS (realistic table, default configuration)';
const SOURCES = ['postgres-changelog', 'postgres-wal'] as const;
type SourceType = (typeof SOURCES)[number];
const POLL_MS = 100;
const STALL_MS = 120_000;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;

export const REALISTIC_ITEMS_SQL = `
CREATE TABLE public.items (
  id      bigint PRIMARY KEY,
  name    text NOT NULL,
  price   numeric(30,10),
  created timestamptz NOT NULL,
  attrs   jsonb,
  blob    bytea,
  note    text
)`;

const say = (text: string) => process.stdout.write(`${text}\n`);
const MiB = (bytes: number) => bytes / 2 ** 20;
const MB = (bytes: number) => bytes / 1e6;
const int = (n: number) => Math.round(n).toLocaleString('en-US');

/** The runtime image's NODE_OPTIONS (the ENV line of the Dockerfile), so the measurement follows the image. */
function imageNodeOptions(): string {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const match = /NODE_OPTIONS="([^"]*)"/.exec(dockerfile);
  if (!match) throw new Error('Dockerfile: no NODE_OPTIONS="..." found; set BENCH_MEMORY_NODE_OPTIONS');
  return match[1]!;
}

/**
 * The realistic table's backlog (makeBacklog): inserts of new ids (name of
 * 30–60 characters, a JSON object of five keys, 64 bytes of bytea, a third of
 * the notes NULL), then updates of 15 % and deletes of 5 % of the rows the
 * round inserted, `insertsPerRound` inserts a round.
 */
function realisticShape(insertsPerRound: number): BacklogShape {
  return {
    insert: `INSERT INTO public.items (id, name, price, created, attrs, blob, note)
         SELECT i,
                'Product ' || i || ' ' || substr(md5(i::text) || md5((i + 1)::text), 1, 15 + (i % 30)::int),
                round((i * 7919 % 100000000) / 7.0, 10),
                timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' + (i % 1000000) * interval '1 microsecond',
                jsonb_build_object('sku', 'SKU-' || lpad(i::text, 8, '0'),
                                   'color', (ARRAY['red', 'green', 'blue', 'black', 'white'])[1 + (i % 5)::int],
                                   'size', 1 + i % 40,
                                   'tags', jsonb_build_array('t' || i % 7, 't' || i % 11),
                                   'in_stock', i % 4 <> 0),
                decode(md5(i::text) || md5((i + 1)::text) || md5((i + 2)::text) || md5((i + 3)::text), 'hex'),
                CASE WHEN i % 3 = 0 THEN NULL ELSE 'Note for item ' || i || ': ' || md5((i * 3)::text) END
           FROM generate_series($1::bigint, $2::bigint) AS i`,
    updateSet: `price = t.price + 1.5, name = t.name || ' v2', attrs = t.attrs || '{"rev": 2}'::jsonb,
                  note = coalesce(t.note, 'Filled in later for ' || t.id)`,
    round: Math.ceil(insertsPerRound / 0.8),
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

// Not unref'd: a wait must keep the benchmark alive even when no child or connection does.
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A stream with the default configuration: only what a stream must name, plus the HTTP port the benchmark reads. */
function writeConfig(file: string, source: SourceType, sourceUrl: string, sinkUrl: string, port: number): void {
  writeFileSync(
    file,
    stringify({
      streams: [
        {
          name: 'memory',
          source: { type: source, url: sourceUrl },
          sink: { type: 'postgres', url: sinkUrl },
          tables: [{ source: 'public.items', target: 'public.items' }],
        },
      ],
      http: { port, host: '127.0.0.1' },
    }),
  );
}

interface Child {
  pid: number;
  exited: Promise<{ code: number | null; signal: string | null }>;
  hasExited: () => boolean;
  logTail: () => string;
  stop: () => Promise<{ code: number | null; signal: string | null }>;
}

/** `node dist/cdc-sync.mjs ARGS` as the image starts it: NODE_OPTIONS in the environment, no other node options. Its log goes to a file. */
function startCli(args: string[], nodeOptions: string, workDir: string, logName: string): Child {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: nodeOptions, NODE_ENV: 'production' };
  // The older scripts' variables must not change the default configuration.
  for (const name of Object.keys(env)) if (/^(SYNC_|REVERSE_SYNC_)/.test(name)) delete env[name];
  const logFile = join(workDir, logName);
  const fd = openSync(logFile, 'w');
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], { env, cwd: workDir, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let done = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    }),
  );
  const logTail = () => readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
  return {
    pid: child.pid!,
    exited,
    hasExited: () => done,
    logTail,
    stop: async () => {
      if (!done) child.kill('SIGINT');
      const exit = await Promise.race([exited, delay(STOP_TIMEOUT_MS).then(() => null)]);
      if (!exit) {
        child.kill('SIGKILL');
        throw new Error(`cdc-sync did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGINT:\n${logTail()}`);
      }
      return exit;
    },
  };
}

/** /metrics of the child, or null while it does not answer yet. */
async function scrape(port: number): Promise<Sample[] | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return parseMetrics(await response.text());
  } catch {
    return null;
  }
}

async function waitForMetrics(child: Child, port: number): Promise<Sample[]> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.hasExited()) throw new Error(`cdc-sync exited before listening:\n${child.logTail()}`);
    const samples = await scrape(port);
    if (samples) return samples;
    if (Date.now() > deadline) throw new Error(`cdc-sync did not listen within ${START_TIMEOUT_MS / 1000} s:\n${child.logTail()}`);
    await delay(50);
  }
}

interface Result {
  source: SourceType;
  changes: number;
  mix: BacklogMix;
  backlogSeconds: number;
  /** VmHWM of the cdc-sync process once the backlog was applied. */
  peakRssBytes: number;
  /** Highest VmRSS polled, and when: seconds since spawn, changes applied by then, the V8 heap and external memory at the last scrape. */
  polledPeak: { bytes: number; atSeconds: number; applied: number; heapTotalBytes: number; externalBytes: number };
  /** VmRSS at the first answer of /metrics (connected, nothing applied yet). */
  startRssBytes: number;
  /** Highest readings of the process's own memory gauges (prom-client default metrics). */
  maxHeapUsedBytes: number;
  maxHeapTotalBytes: number;
  maxExternalBytes: number;
  /** Highest cdc_sync_buffer_events (changes a push source holds, decoded or not; postgres-wal). */
  maxBufferedEvents: number;
  seconds: number;
  startupSeconds: number;
  changesPerSecond: number;
  batches: number;
  cpuSeconds: number;
  exitCode: number | null;
  neighbours: string[];
}

/** Runs cdc-sync until `changes` are applied, sampling its memory; then SIGINT, which must end it with 0. */
async function drain(source: SourceType, configPath: string, port: number, changes: number, nodeOptions: string, workDir: string): Promise<Omit<Result, 'mix' | 'backlogSeconds' | 'neighbours'>> {
  const started = Date.now();
  const child = startCli(['run', '--config', configPath], nodeOptions, workDir, `${source}-drain.log`);
  try {
    await waitForMetrics(child, port);
    const startupSeconds = (Date.now() - started) / 1000;
    const startRssBytes = memory(child.pid).current;
    const polledPeak = { bytes: startRssBytes, atSeconds: startupSeconds, applied: 0, heapTotalBytes: 0, externalBytes: 0 };
    let maxHeapUsedBytes = 0;
    let maxHeapTotalBytes = 0;
    let maxExternalBytes = 0;
    let maxBufferedEvents = 0;
    let applied = 0;
    let lastProgress = Date.now();
    let lastLine = 0;
    let samples: Sample[] = [];
    for (;;) {
      if (child.hasExited()) throw new Error(`cdc-sync exited during the drain:\n${child.logTail()}`);
      const rss = memory(child.pid).current;
      samples = (await scrape(port)) ?? samples;
      const failed = sum(samples, 'cdc_sync_events_failed_total');
      if (failed > 0) throw new Error(`${failed} changes were dead-lettered:\n${child.logTail()}`);
      const now = sum(samples, 'cdc_sync_events_applied_total');
      if (now > applied) lastProgress = Date.now();
      applied = now;
      const elapsed = (Date.now() - started) / 1000;
      const heapTotalBytes = sum(samples, 'cdc_sync_nodejs_heap_size_total_bytes');
      const externalBytes = sum(samples, 'cdc_sync_nodejs_external_memory_bytes');
      if (rss > polledPeak.bytes) Object.assign(polledPeak, { bytes: rss, atSeconds: elapsed, applied, heapTotalBytes, externalBytes });
      maxHeapUsedBytes = Math.max(maxHeapUsedBytes, sum(samples, 'cdc_sync_nodejs_heap_size_used_bytes'));
      maxHeapTotalBytes = Math.max(maxHeapTotalBytes, heapTotalBytes);
      maxExternalBytes = Math.max(maxExternalBytes, externalBytes);
      maxBufferedEvents = Math.max(maxBufferedEvents, sum(samples, 'cdc_sync_buffer_events'));
      if (elapsed - lastLine >= 5) {
        lastLine = elapsed;
        process.stdout.write(`  ${int(applied)} applied after ${elapsed.toFixed(0)} s, RSS ${MiB(rss).toFixed(1)} MiB\r`);
      }
      if (applied >= changes) break;
      if (Date.now() - lastProgress > STALL_MS) throw new Error(`no progress for ${STALL_MS / 1000} s at ${applied} changes:\n${child.logTail()}`);
      await delay(POLL_MS);
    }
    process.stdout.write('\n');
    if (applied !== changes) throw new Error(`applied ${applied} changes, expected ${changes}`);
    const peakRssBytes = memory(child.pid).peak;
    const cpu = cpuSeconds(child.pid);
    // The gauge is set right after the last batch committed: a finer end than the poll.
    const lastApplied = sum(samples, 'cdc_sync_last_applied_timestamp_seconds') * 1000;
    const seconds = (lastApplied > started ? lastApplied - started : Date.now() - started) / 1000;
    const exit = await child.stop();
    if (exit.code !== 0) throw new Error(`cdc-sync exited with code ${exit.code} (signal ${exit.signal}) after SIGINT:\n${child.logTail()}`);
    return {
      source,
      changes,
      peakRssBytes,
      polledPeak,
      startRssBytes,
      maxHeapUsedBytes,
      maxHeapTotalBytes,
      maxExternalBytes,
      maxBufferedEvents,
      seconds,
      startupSeconds,
      changesPerSecond: changes / seconds,
      batches: sum(samples, 'cdc_sync_batch_duration_seconds_count'),
      cpuSeconds: cpu,
      exitCode: exit.code,
    };
  } finally {
    if (!child.hasExited()) {
      process.kill(child.pid, 'SIGKILL');
      await child.exited;
    }
  }
}

async function measure(cluster: PostgresCluster, source: SourceType, changes: number, insertsPerRound: number, nodeOptions: string, workDir: string): Promise<Result> {
  const prefix = source === 'postgres-wal' ? 'wal' : 'changelog';
  const [srcDb, dstDb] = [`${prefix}_src`, `${prefix}_dst`];
  await withClient(cluster.url('postgres'), async (c) => {
    for (const db of [srcDb, dstDb]) await c.query(`CREATE DATABASE ${db}`);
  });
  const src = cluster.url(srcDb);
  const dst = cluster.url(dstDb);
  for (const url of [src, dst]) await withClient(url, (c) => c.query(REALISTIC_ITEMS_SQL));
  const port = await freePort();
  const configPath = join(workDir, `${prefix}.yaml`);
  writeConfig(configPath, source, src, dst, port);

  if (source === 'postgres-changelog') {
    // The change-log set-up exactly as `cdc-sync init-sql` prints it; then the stream starts before the burst
    // (a first start would also copy the rows the burst left): `run --once` copies the empty table and saves a checkpoint.
    await withClient(src, (c) => c.query(changelogSetupSql(['public.items'])));
    const child = startCli(['run', '--once', '--config', configPath], nodeOptions, workDir, `${prefix}-setup.log`);
    const exit = await child.exited;
    if (exit.code !== 0) throw new Error(`the first postgres-changelog run exited with ${exit.code}:\n${child.logTail()}`);
  } else {
    // A backlog of a WAL source is WAL its slot kept while cdc-sync was away: a first run creates the
    // publication and the slot, copies the (empty) table and saves a checkpoint, then stops.
    const child = startCli(['run', '--config', configPath], nodeOptions, workDir, `${prefix}-setup.log`);
    try {
      await waitForMetrics(child, port);
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        const ready = await withClient(dst, async (c) => {
          const { rows } = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM cdc_sync.checkpoints`).catch(() => ({ rows: [{ n: 0 }] }));
          return rows[0]!.n > 0;
        });
        const active = await withClient(src, async (c) => (await c.query(`SELECT 1 FROM pg_replication_slots WHERE active`)).rowCount! > 0);
        if (ready && active) break;
        if (child.hasExited() || Date.now() > deadline) throw new Error(`the first postgres-wal run did not save a checkpoint:\n${child.logTail()}`);
        await delay(100);
      }
    } finally {
      const exit = await child.stop();
      if (exit.code !== 0) throw new Error(`the first postgres-wal run exited with ${exit.code}:\n${child.logTail()}`);
    }
  }

  say(`${source}: making the backlog (${int(changes)} changes)…`);
  const backlogStarted = performance.now();
  let lastReport = 0;
  const shape = realisticShape(insertsPerRound);
  const mix = await makeBacklog(src, changes, (done) => {
    if (done - lastReport >= 100_000 || done === changes) {
      lastReport = done;
      process.stdout.write(`  ${int(done)} changes\r`);
    }
  }, { changeLog: source === 'postgres-changelog', shape });
  const backlogSeconds = (performance.now() - backlogStarted) / 1000;
  process.stdout.write('\n');
  if (source === 'postgres-changelog') {
    await withClient(src, async (c) => {
      const { rows } = await c.query<{ n: string }>('SELECT count(*)::text AS n FROM cdc_sync.changes');
      if (Number(rows[0]!.n) !== changes) throw new Error(`backlog has ${rows[0]!.n} changes, expected ${changes}`);
    });
  } else {
    await withClient(src, async (c) => {
      const { rows } = await c.query<{ lag: string }>(`SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) AS lag FROM pg_replication_slots`);
      say(`  WAL held by the slot: ${rows[0]!.lag}`);
    });
  }
  const expected = await tableDigest(src);

  say(`${source}: draining with cdc-sync run (default configuration, NODE_OPTIONS="${nodeOptions}")…`);
  const watch = new NeighbourWatch();
  const result = await drain(source, configPath, port, changes, nodeOptions, workDir);
  const neighbours = watch.stop();
  const actual = await tableDigest(dst);
  if (actual.rows !== expected.rows || actual.md5 !== expected.md5) {
    throw new Error(`${dstDb}.items differs from ${srcDb}.items: ${actual.rows} rows md5 ${actual.md5}, expected ${expected.rows} rows md5 ${expected.md5}`);
  }
  // Done with this pair: nothing of it runs (autovacuum) during the next measurement.
  await withClient(cluster.url('postgres'), async (c) => {
    if (source === 'postgres-wal') await withClient(src, (s) => s.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots`));
    for (const db of [srcDb, dstDb]) await c.query(`DROP DATABASE ${db}`);
  });
  return { ...result, mix, backlogSeconds, neighbours };
}

function resultLine(r: Result): string {
  return (
    `${r.source} → postgres: peak RSS ${MiB(r.peakRssBytes).toFixed(1)} MiB (${MB(r.peakRssBytes).toFixed(1)} MB), ` +
    `${int(r.changes)} changes in ${r.seconds.toFixed(1)} s (${int(r.changesPerSecond)} changes/s, start-up included)`
  );
}

function detailLines(r: Result): string[] {
  return [
    `    start-up ${r.startupSeconds.toFixed(2)} s; RSS after start-up ${MiB(r.startRssBytes).toFixed(1)} MiB; highest polled RSS ${MiB(r.polledPeak.bytes).toFixed(1)} MiB ` +
      `at ${r.polledPeak.atSeconds.toFixed(1)} s (${int(r.polledPeak.applied)} applied; V8 heap ${MiB(r.polledPeak.heapTotalBytes).toFixed(1)} MiB, external ${MiB(r.polledPeak.externalBytes).toFixed(1)} MiB)`,
    `    highest V8 heap used / total ${MiB(r.maxHeapUsedBytes).toFixed(1)} / ${MiB(r.maxHeapTotalBytes).toFixed(1)} MiB; highest external ${MiB(r.maxExternalBytes).toFixed(1)} MiB` +
      (r.source === 'postgres-wal' ? `; highest cdc_sync_buffer_events ${int(r.maxBufferedEvents)}` : ''),
    `    ${int(r.batches)} batches; CPU ${r.cpuSeconds.toFixed(1)} s in cdc-sync; exit after SIGINT ${r.exitCode}; dst equals src; ` +
      `busy neighbours: ${r.neighbours.length === 0 ? 'none' : r.neighbours.join(', ')}`,
  ];
}

function section(results: Result[], nodeOptions: string, changes: number, insertsPerRound: number, postgres: string): string {
  const m = machine(postgres);
  const mix = results[0]!.mix;
  const round = Math.ceil(insertsPerRound / 0.8);
  const [updates, deletes] = [Math.floor(round * 0.15), Math.floor(round * 0.05)];
  const neighbours = [...new Set(results.flatMap((r) => r.neighbours))];
  return [
    TITLE,
    '',
    `Recorded ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:memory\` (bench/memory.ts).`,
    '',
    `**Machine**: ${m.cpus} CPUs (${m.cpuModel}), Node.js ${m.node}, ${m.postgres}.`,
    '',
    '**Workload**: `items (id bigint primary key, name text not null, price numeric(30,10), created timestamptz not null, attrs jsonb, blob bytea, note text)`; ' +
      `name 30–60 characters, attrs a JSON object of five keys, blob 64 bytes, a third of note NULL. A fresh backlog of ${int(changes)} changes ` +
      `(${int(mix.inserts)} inserts, ${int(mix.updates)} updates, ${int(mix.deletes)} deletes), written in transactions of ${int(insertsPerRound)} inserts, ` +
      `${int(updates)} updates and ${int(deletes)} deletes, one source at a time on fresh databases of a private cluster (fsync off). ` +
      `\`cdc-sync run\` with the **default configuration** (no \`batch\`, \`readLimit\` or \`bufferSize\`: \`batch.maxSize\` ${int(defaultBatchSize('postgres-changelog'))} for postgres-changelog and ${int(defaultBatchSize('postgres-wal'))} for postgres-wal; ` +
      `batches keep whole source transactions, so here postgres-changelog's are those transactions and postgres-wal's one of each kind) and the image's \`NODE_OPTIONS="${nodeOptions}"\` drains it into an empty copy of the table (sink \`postgres\`). ` +
      "Peak RSS is the process's VmHWM once the last change was applied; the target then equals the source (md5 of all rows in id order) and SIGINT ends the process with 0.",
    '',
    '| source → sink | peak RSS | drain time (start-up included) | changes/s | batches | highest V8 heap (total) / external memory |',
    '|---|---:|---:|---:|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.source} → postgres | **${MiB(r.peakRssBytes).toFixed(1)} MiB** (${MB(r.peakRssBytes).toFixed(1)} MB) | ${r.seconds.toFixed(1)} s | ${int(r.changesPerSecond)} | ${int(r.batches)} | ` +
        `${MiB(r.maxHeapTotalBytes).toFixed(1)} / ${MiB(r.maxExternalBytes).toFixed(1)} MiB |`,
    ),
    '',
    `RSS after start-up: ${results.map((r) => `${MiB(r.startRssBytes).toFixed(1)} MiB (${r.source})`).join(', ')}. ` +
      `Other processes using ≥ 10 % of a CPU during the drains: ${neighbours.length === 0 ? 'none' : neighbours.join(', ')}.`,
    '',
    'Reproduce: `npm run bench:memory` (needs the PostgreSQL server binaries). Environment: `BENCH_MEMORY_CHANGES` (default 1000000), ' +
      '`BENCH_MEMORY_SOURCES` (default both), `BENCH_MEMORY_TX` (inserts per transaction, default 8000; the postgres-wal source holds a transaction whole, so larger ones need more memory), ' +
      "`BENCH_MEMORY_NODE_OPTIONS` (default the Dockerfile's), `BENCH_NODE_ARGS`, `BENCH_MEMORY_KEEP=1`, `BENCH_WRITE=0`. Only a run with the defaults replaces this section.",
    '',
  ].join('\n');
}

async function main(): Promise<number> {
  const changes = envInt('BENCH_MEMORY_CHANGES', 1_000_000);
  const insertsPerRound = envInt('BENCH_MEMORY_TX', 8000);
  const nodeOptions = process.env.BENCH_MEMORY_NODE_OPTIONS ?? imageNodeOptions();
  const sources = (process.env.BENCH_MEMORY_SOURCES ?? SOURCES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      if (!(SOURCES as readonly string[]).includes(s)) throw new Error(`BENCH_MEMORY_SOURCES: ${s} is not one of ${SOURCES.join(', ')}`);
      return s as SourceType;
    });
  const workspace = benchWorkspace('memory', say, Boolean(process.env.BENCH_MEMORY_KEEP));
  const workDir = workspace.dir;
  try {
    say(`cdc-sync peak memory: ${int(changes)} changes of a realistic table, default configuration, NODE_OPTIONS="${nodeOptions}"`);
    const cluster = await workspace.start();
    const postgres = await serverVersion(cluster);
    // As the image's build does: one start leaves V8's code cache for these options (tools/launcher.mjs).
    const warm = startCli(['--help'], nodeOptions, workDir, 'help.log');
    const warmExit = await warm.exited;
    if (warmExit.code !== 0) throw new Error(`cdc-sync --help exited with ${warmExit.code}:\n${warm.logTail()}`);
    const results: Result[] = [];
    for (const source of sources) {
      const result = await measure(cluster, source, changes, insertsPerRound, nodeOptions, workDir);
      results.push(result);
      say(resultLine(result));
      for (const line of detailLines(result)) say(line);
    }
    say('');
    for (const r of results) say(resultLine(r));
    // Only the defaults make the recorded figures (the README quotes them).
    const defaults =
      results.length === SOURCES.length &&
      changes === 1_000_000 &&
      insertsPerRound === 8000 &&
      process.env.BENCH_MEMORY_NODE_OPTIONS === undefined &&
      (process.env.BENCH_NODE_ARGS ?? '').trim() === '';
    if (process.env.BENCH_WRITE !== '0' && defaults) {
      const file = join(ROOT, 'BENCHMARKS.md');
      writeSection(file, section(results, nodeOptions, changes, insertsPerRound, postgres), TITLE);
      say(`wrote ${file}`);
    }
    return 0;
  } finally {
    await workspace.stop();
  }
}

runBenchmark(main);
