/**
 * `npm run bench:pairs`: bench/run.ts's drain for the two SQLite pairs,
 * sqlite-changelog → postgres and postgres-changelog → sqlite. Per pair the
 * stream starts on the empty tables, a burst of BENCH_PAIRS_CHANGES changes
 * (200,000) lands in the source's change log, a naive one-write-per-change
 * loop runs on its first changes, then the real `cdc-sync run` with the
 * default configuration drains it; the target must then equal the source.
 * Recorded, no targets: exit code 0 when both pairs ran, 2 when one failed.
 */
import os from 'node:os';
import { join } from 'node:path';
import type { PostgresCluster } from '../test/support/postgres-cluster.js';
import { makeBacklog, prepareSource, prepareTarget, withClient, type BacklogMix } from './backlog.js';
import { drain, startStream, type DrainResult } from './drain.js';
import type { NaiveResult } from './naive.js';
import { SHIPPED_NODE_ARGS } from './node-args.js';
import { NeighbourWatch, postmasterPid } from './proc.js';
import { envInt, machine, publishSection, runBenchmark, type Machine } from './report.js';
import { defaultBatchSize } from '../src/config/schema.js';
import { benchWorkspace, createDatabases } from './workspace.js';
import {
  createSqliteItems,
  makeSqliteBacklog,
  naivePostgresToSqlite,
  naiveSqliteToPostgres,
  postgresDigest,
  sqliteDigest,
  sqliteVersion,
  type Digest,
} from './pairs-sqlite.js';

const TITLE = '## SQLite pairs: backlog drain beside the naive loop';

const say = (text: string) => process.stdout.write(`${text}\n`);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

interface Settings {
  changes: number;
  naiveChanges: number;
  naiveSeconds: number;
  workDir: string;
  postmaster: number;
}

/** One endpoint pair, its databases already made (empty tables, capture set up on the source). */
interface Pair {
  name: string;
  label: string;
  streams: Record<string, unknown>[];
  sourceUrl: string;
  sinkUrl: string;
  burst: (onProgress: (done: number) => void) => Promise<BacklogMix>;
  naive: () => Promise<NaiveResult & { pragmas?: string }>;
  sourceDigest: () => Promise<Digest>;
  targetDigest: () => Promise<Digest>;
}

interface PairResult {
  name: string;
  mix: BacklogMix;
  burstSeconds: number;
  naive: NaiveResult;
  /** The naive SQLite target's pragmas (the sqlite sink's), for the pair that writes SQLite. */
  pragmas: string | undefined;
  drain: DrainResult;
  digest: Digest;
  neighbours: { naive: string[]; drain: string[] };
}

async function sqliteToPostgres(cluster: PostgresCluster, s: Settings): Promise<Pair> {
  const path = join(s.workDir, 'source.db');
  createSqliteItems(path, true);
  const [dst, naive] = [cluster.url('lite_dst'), cluster.url('lite_naive')];
  await prepareTarget(dst);
  await prepareTarget(naive);
  const url = `sqlite:${path}`;
  return {
    name: 'sqlite-changelog → postgres',
    label: 'sqlite-to-postgres',
    streams: [{ name: 'sqlite-to-postgres', source: { type: 'sqlite-changelog', url }, sink: { type: 'postgres', url: dst }, tables: [{ source: 'items', target: 'public.items' }] }],
    sourceUrl: url,
    sinkUrl: dst,
    burst: async (onProgress) => makeSqliteBacklog(path, s.changes, onProgress),
    naive: () => naiveSqliteToPostgres({ sqlitePath: path, postgresUrl: naive, maxChanges: s.naiveChanges, maxSeconds: s.naiveSeconds }),
    sourceDigest: async () => sqliteDigest(path),
    targetDigest: () => postgresDigest(dst),
  };
}

async function postgresToSqlite(cluster: PostgresCluster, s: Settings): Promise<Pair> {
  const src = cluster.url('pg_src');
  await prepareSource(src);
  // The sqlite sink makes its own cdc_sync_* tables (checkpoints, dead letters) on open; it needs the file and the table.
  const [target, naive] = [join(s.workDir, 'target.db'), join(s.workDir, 'naive.db')];
  createSqliteItems(target, false);
  createSqliteItems(naive, false);
  const url = `sqlite:${target}`;
  return {
    name: 'postgres-changelog → sqlite',
    label: 'postgres-to-sqlite',
    streams: [{ name: 'postgres-to-sqlite', source: { type: 'postgres-changelog', url: src }, sink: { type: 'sqlite', url }, tables: [{ source: 'public.items', target: 'items' }] }],
    sourceUrl: src,
    sinkUrl: url,
    burst: (onProgress) => makeBacklog(src, s.changes, onProgress),
    naive: () => naivePostgresToSqlite({ sqlitePath: naive, postgresUrl: src, maxChanges: s.naiveChanges, maxSeconds: s.naiveSeconds }),
    sourceDigest: () => postgresDigest(src),
    targetDigest: async () => sqliteDigest(target),
  };
}

async function runPair(pair: Pair, s: Settings): Promise<PairResult> {
  say(`\n${pair.name}`);
  say('  starting the stream on the empty tables (cdc-sync run --once)…');
  await startStream({ sourceUrl: pair.sourceUrl, sinkUrl: pair.sinkUrl, workDir: s.workDir, streams: pair.streams, label: pair.label });

  say(`  making the burst (${int(s.changes)} changes)…`);
  const started = performance.now();
  let lastReport = 0;
  const mix = await pair.burst((done) => {
    if (done - lastReport >= 50_000 || done === s.changes) {
      lastReport = done;
      process.stdout.write(`  ${int(done)} changes\r`);
    }
  });
  const burstSeconds = (performance.now() - started) / 1000;
  say(`\n  burst ready in ${burstSeconds.toFixed(1)} s: ${mix.inserts} inserts, ${mix.updates} updates, ${mix.deletes} deletes`);
  const expected = await pair.sourceDigest();

  // The baseline first, as bench/run.ts has it: on a quiet server, before the drain.
  say(`  naive loop (one write per change, up to ${int(s.naiveChanges)} changes or ${s.naiveSeconds} s)…`);
  const naiveWatch = new NeighbourWatch();
  naiveWatch.own(s.postmaster);
  const { pragmas, ...naive } = await pair.naive();
  const naiveBusy = naiveWatch.stop();
  say(`  ${int(naive.changesPerSecond)} changes/s (${int(naive.changes)} changes in ${naive.seconds.toFixed(1)} s)`);

  say('  draining with cdc-sync run (default configuration)…');
  const watch = new NeighbourWatch();
  watch.own(s.postmaster);
  let lastLine = 0;
  const result = await drain({
    sourceUrl: pair.sourceUrl,
    sinkUrl: pair.sinkUrl,
    changes: s.changes,
    workDir: s.workDir,
    postmaster: s.postmaster,
    streams: pair.streams,
    label: pair.label,
    onProgress: (applied, elapsed) => {
      if (elapsed - lastLine >= 5 || applied >= s.changes) {
        lastLine = elapsed;
        process.stdout.write(`  ${int(applied)} applied after ${elapsed.toFixed(1)} s\r`);
      }
    },
  });
  const drainBusy = watch.stop();
  process.stdout.write('\n');
  const actual = await pair.targetDigest();
  if (actual.rows !== expected.rows || actual.md5 !== expected.md5) {
    throw new Error(`${pair.name}: the target differs from the source: ${actual.rows} rows md5 ${actual.md5}, expected ${expected.rows} rows md5 ${expected.md5}`);
  }
  say(`  ${int(result.changesPerSecond)} changes/s; target equals source (${actual.rows} rows, md5 ${actual.md5}); exit ${result.exitCode} after SIGINT`);
  return { name: pair.name, mix, burstSeconds, naive, pragmas, drain: result, digest: actual, neighbours: { naive: naiveBusy, drain: drainBusy } };
}

async function main(): Promise<number> {
  const changes = envInt('BENCH_PAIRS_CHANGES', 200_000);
  const naiveChanges = envInt('BENCH_NAIVE_CHANGES', 20_000);
  const naiveSeconds = envInt('BENCH_NAIVE_SECONDS', 20);
  const workspace = benchWorkspace('pairs', say);
  const workDir = workspace.dir;

  try {
    const loadBefore = os.loadavg();
    say(`cdc-sync benchmark: SQLite pairs, ${int(changes)} changes each, default configuration`);
    say('starting a private PostgreSQL cluster…');
    const cluster = await workspace.start();
    const postgresVersion = await createDatabases(cluster, ['lite_dst', 'lite_naive', 'pg_src']);
    const settings: Settings = { changes, naiveChanges, naiveSeconds, workDir, postmaster: postmasterPid(cluster.dataDir) };
    const results = [await runPair(await sqliteToPostgres(cluster, settings), settings), await runPair(await postgresToSqlite(cluster, settings), settings)];

    say('');
    for (const r of results) say(consoleLine(r));
    say('');
    publishSection(section(results, { date: new Date(), machine: machine(postgresVersion), settings, loadBefore, workDir }), TITLE);
    return 0;
  } finally {
    await workspace.stop();
  }
}

const ratio = (r: PairResult) => r.drain.changesPerSecond / r.naive.changesPerSecond;

function consoleLine(r: PairResult): string {
  const d = r.drain;
  return (
    `  ${r.name.padEnd(28)} ${int(d.changesPerSecond).padStart(8)} changes/s  drain ${d.seconds.toFixed(2)} s (start-up ${d.startupSeconds.toFixed(2)} s)  ` +
    `${int(d.batches)} batches  RSS ${mb(d.peakRssBytes)}  CPU ${d.childCpuSeconds.toFixed(1)} s / ${d.postgresCpuSeconds.toFixed(1)} s  ` +
    `naive ${int(r.naive.changesPerSecond)} changes/s  ratio ${ratio(r).toFixed(1)}×`
  );
}


interface SectionInput {
  date: Date;
  machine: Machine;
  settings: Settings;
  loadBefore: number[];
  workDir: string;
}

function section(results: PairResult[], input: SectionInput): string {
  const m = input.machine;
  const s = input.settings;
  const mix = results[0]!.mix;
  const share = (n: number) => ((n / s.changes) * 100).toFixed(0);
  const busy = (list: string[]) => (list.length === 0 ? 'none' : list.join(', '));
  const pragmas = results.map((r) => r.pragmas).find((p) => p !== undefined) ?? 'n/a';
  const row = (r: PairResult) => {
    const d = r.drain;
    return (
      `| ${r.name} | **${int(d.changesPerSecond)}** | ${d.seconds.toFixed(2)} s (start-up ${d.startupSeconds.toFixed(2)} s) | ${int(d.batches)} | ${mb(d.peakRssBytes)} | ` +
      `${d.childCpuSeconds.toFixed(1)} s / ${d.postgresCpuSeconds.toFixed(1)} s | ${int(r.naive.changesPerSecond)} (${int(r.naive.changes)} changes, ${r.naive.seconds.toFixed(1)} s) | **${ratio(r).toFixed(1)}×** |`
    );
  };
  return [
    TITLE,
    '',
    `Recorded ${input.date.toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:pairs\` (bench/pairs.ts).`,
    '',
    `**Machine**: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB memory, ${m.kernel}, Node.js ${m.node}, ${m.postgres}, SQLite ${sqliteVersion()} (better-sqlite3). ` +
      `Load average (1/5/15 min) at the start: ${input.loadBefore.map((l) => l.toFixed(2)).join(' / ')}.`,
    '',
    `**Workload**: per pair, a burst of ${int(s.changes)} changes in the source's change log, made after the stream had started on the empty tables ` +
      '(`cdc-sync run --once`: initial copy done, checkpoint stored), so the drain reads the burst and nothing else. ' +
      `The table is bench/run.ts's \`items\` (id, name, price numeric(12,2), qty int, updated_at timestamptz, payload text of 64 chars); in SQLite \`items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, qty INTEGER, updated_at DATETIME NOT NULL, payload TEXT)\`. ` +
      `Per round of 10,000 changes: ${share(mix.inserts)} % inserts of new ids, ${share(mix.updates)} % updates (qty, price, name and updated_at changed) and ${share(mix.deletes)} % deletes of rows that round inserted, ` +
      'as transactions of 8,000 / 1,500 / 500 rows: on PostgreSQL bench/backlog.ts\'s `makeBacklog` (set-based statements through the change-log trigger), on SQLite the same rows and values written by better-sqlite3 one prepared statement per row inside each transaction, through the `sqlite-changelog` capture triggers (`applySqliteChangelogSetup`). ' +
      `Making the burst took ${results.map((r) => `${r.burstSeconds.toFixed(1)} s (${r.name})`).join(', ')}, not part of the result. ` +
      '`cdc-sync run` (the built CLI, a child process) then drains it with the **default configuration** ' +
      `(no \`batch\` block: \`maxSize\` ${defaultBatchSize('postgres-changelog')}), checkpoints in the sink, Node.js options as shipped (\`${SHIPPED_NODE_ARGS.join(' ')}\`), ` +
      'until `cdc_sync_events_applied_total` reaches the burst; the target is then checked to equal the source (row count and md5 of all rows in id order, see below) and the process, stopped with SIGINT, must exit 0. ' +
      'PostgreSQL is a private throw-away cluster (fsync, synchronous_commit and full_page_writes off); the SQLite files are in a temporary directory on the local disk.',
    '',
    '| pair | changes/s | drain time | batches | peak RSS | CPU cdc-sync / PostgreSQL | naive changes/s | ratio |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map(row),
    '',
    'Notes:',
    '',
    '- changes/s is the burst ÷ drain time, the drain timed from the spawn of the CLI (start-up included) until the batch that applied the last change committed. ' +
      'Batches from `cdc_sync_batch_duration_seconds`; peak RSS is the cdc-sync process\'s VmHWM; CPU is that of the cdc-sync process (for → sqlite it includes the SQLite writes, which run in-process) and of every PostgreSQL backend, over the drain. ' +
      'postgres-changelog keeps source transactions whole (a batch grows past `maxSize` to a transaction\'s end, README "Transactions arrive whole"), so it applies fewer, larger batches than sqlite-changelog, whose log has no transaction boundaries.',
    `- The naive loops do what bench/naive.ts does for PostgreSQL → PostgreSQL: read the change rows in order, in pages of 1,000, and write each change with its own autocommit upsert (\`INSERT … ON CONFLICT (id) DO UPDATE\`) or \`DELETE\`, into an empty copy of the target table; over the first changes of the burst (up to ${int(s.naiveChanges)} or ${s.naiveSeconds} s), before the drain. ` +
      'sqlite-changelog → postgres: `cdc_sync_changes` of the SQLite file, written with node `pg` (one round trip per change) into a separate PostgreSQL database; ' +
      `postgres-changelog → sqlite: \`cdc_sync.changes\`, written with better-sqlite3 (one statement and commit per change) into a separate SQLite file opened with the sink's own \`openSqlite()\`, so with its pragmas: ${pragmas} ` +
      '(src/db/sqlite/connection.ts sets WAL, foreign keys and the busy timeout; synchronous is better-sqlite3\'s build default for WAL). They do not mark changes as synced. ' +
      'Writing SQLite has no round trip (in-process) and, with `synchronous=NORMAL` in WAL mode, no fsync per commit, so that naive loop is far cheaper than one against a server.',
    '- Equality: both sides are read in id order and each row normalized in JS before hashing, so that equal rows read the same in SQLite and PostgreSQL: ids and qty as integer text, price to 2 decimals ' +
      '(SQLite REAL holds e.g. 124.45000000000002 after `price + 1`, numeric(12,2) the rounded value), updated_at as microseconds since 1970 (SQLite keeps text, ISO with `Z` as the burst writes it or `2024-01-01 00:00:01` as the sqlite sink writes it; PostgreSQL is read as ISO text in UTC), text as is. ' +
      `Rows after the drain: ${results.map((r) => `${int(r.digest.rows)} (${r.name})`).join(', ')}.`,
    `- Everything (PostgreSQL, cdc-sync, the benchmark) shares the ${m.cpus} CPUs, and other work may run on this machine. Other processes using ≥ 10 % of a CPU: ` +
      results.map((r) => `${r.name}: drain ${busy(r.neighbours.drain)}; naive ${busy(r.neighbours.naive)}`).join('; ') + '.',
    '',
    'Reproduce: `npm run bench:pairs` (builds, then runs `node dist/bench/pairs.js`; needs the PostgreSQL server binaries, e.g. Debian `postgresql`). ' +
      'Environment: `BENCH_PAIRS_CHANGES` (burst per pair, default 200000), `BENCH_NAIVE_CHANGES` / `BENCH_NAIVE_SECONDS` (naive sample, default 20000 / 20), `BENCH_WRITE=0` (do not touch BENCHMARKS.md).',
    '',
  ].join('\n');
}

runBenchmark(main);
