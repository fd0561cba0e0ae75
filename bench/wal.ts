/**
 * `npm run bench:wal`: the same backlog of changes carried from one
 * PostgreSQL database to another twice, one after the other on one private
 * cluster: by PostgreSQL's own logical replication (CREATE SUBSCRIPTION,
 * the reference) and by `cdc-sync run` with the postgres-wal source and the
 * PostgreSQL sink. Both read from a logical slot created before the backlog
 * was written; each is timed from its start until its slot has confirmed the
 * backlog's last LSN (what both acknowledge only once applied), and both
 * targets must then equal the source. Repeated BENCH_WAL_ROUNDS times (5) on
 * fresh databases; the median ratio counts. Target: cdc-sync ≥ 1.0× native, with the default configuration.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgresCluster, type PostgresCluster } from '../test/support/postgres-cluster.js';
import { makeBacklog, prepareTarget, tableDigest, withClient, type BacklogMix } from './backlog.js';
import { machine, publishSection, runBenchmark } from './report.js';
import { childrenCpu, cpuBetween, cpuCounters, cpuDetail, cpuSeconds, CpuTimeline, postmasterPid, stealShare } from './proc.js';
import { SHIPPED_NODE_ARGS } from './node-args.js';

/** Issue 18: at least as fast as PostgreSQL's own logical replication. */
const TARGET = 1.0;
/** BENCH_WAL_BATCH: batch.maxSize of cdc-sync's run; unset, the default configuration (no batch block). */
const BATCH = process.env.BENCH_WAL_BATCH ? Number(process.env.BENCH_WAL_BATCH) : undefined;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TITLE = '## postgres-wal → PostgreSQL vs. PostgreSQL logical replication';
const CHANGES = Number(process.env.BENCH_WAL_CHANGES ?? 300_000);
/** Rounds, each on fresh databases; the median ratio is the result, as one run on a shared machine varies. */
const ROUNDS = Number(process.env.BENCH_WAL_ROUNDS ?? 5);

const say = (text: string) => process.stdout.write(`${text}\n`);

async function scalar<T>(url: string, sql: string, params: unknown[] = []): Promise<T> {
  return withClient(url, async (c) => Object.values((await c.query(sql, params)).rows[0] as Record<string, T>)[0]!);
}

/** Waits until the slot has confirmed `lsn`; returns the seconds since `since`. */
async function confirmed(url: string, slot: string, lsn: string, since: number): Promise<number> {
  for (;;) {
    const done = await scalar<boolean>(url, `SELECT coalesce(confirmed_flush_lsn >= $2::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1`, [slot, lsn]);
    if (done) return (performance.now() - since) / 1000;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Round {
  nativeSeconds: number;
  cdcSeconds: number;
  nativeCpu: number;
  cdcPgCpu: number;
  cdcProcessCpu: number;
  ratio: number;
}

/**
 * One round on fresh databases and fresh slots, so no round reads WAL an
 * earlier one wrote: the slots are made, then the backlog is written, then
 * each side catches up alone.
 */
async function runRound(cluster: PostgresCluster, work: string, round: number, say: (text: string) => void): Promise<Round & { mix: BacklogMix; equal: boolean; exit: number | null }> {
  const names = { src: `src_${round}`, native: `native_${round}`, cdc: `cdc_${round}` };
  for (const db of Object.values(names)) await withClient(cluster.url('postgres'), (c) => c.query(`CREATE DATABASE ${db}`));
  const [src, native, cdc] = [names.src, names.native, names.cdc].map((d) => cluster.url(d)) as [string, string, string];
  for (const url of [src, native, cdc]) await prepareTarget(url);
  const nativeSlot = `bench_native_${round}`;
  const cdcSlot = `bench_cdc_${round}`;

  // Native: publication and slot now; the subscription (same cluster: the slot must exist first) stays disabled.
  await withClient(src, async (c) => {
    await c.query(`CREATE PUBLICATION ${nativeSlot} FOR TABLE public.items`);
    await c.query(`SELECT pg_create_logical_replication_slot('${nativeSlot}', 'pgoutput')`);
  });
  await withClient(native, (c) =>
    c.query(`CREATE SUBSCRIPTION ${nativeSlot} CONNECTION '${src.replace('postgres://', 'postgresql://')}' PUBLICATION ${nativeSlot}
             WITH (create_slot = false, slot_name = '${nativeSlot}', enabled = false, copy_data = false)`),
  );

  // cdc-sync: a first short run creates its publication and slot, then stops.
  const config = join(work, `cdc-sync-${round}.yaml`);
  writeFileSync(
    config,
    `streams:
  - name: bench
    source: { type: postgres-wal, url: "${src}", slot: ${cdcSlot}, publication: ${cdcSlot}, snapshot: never }
    sink: { type: postgres, url: "${cdc}" }
    tables: [{ source: public.items, target: public.items }]
${BATCH === undefined ? '' : `    batch: { maxSize: ${BATCH} }\n`}http: { port: 0, host: 127.0.0.1 }
log: { level: warn }
`,
  );
  // BENCH_NODE_ARGS: extra node flags for the cdc-sync process (e.g. --cpu-prof to profile it); BENCH_STDOUT=1 shows its stdout (--trace-gc).
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const run = () =>
    spawn(process.execPath, [...SHIPPED_NODE_ARGS, ...nodeArgs, join(ROOT, 'dist/cdc-sync.mjs'), 'run', '--config', config], { stdio: ['ignore', process.env.BENCH_STDOUT ? 'inherit' : 'ignore', 'inherit'] });
  let child = run();
  while (!(await scalar<boolean>(src, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active)`, [cdcSlot]))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGINT');
  await new Promise((r) => child.on('exit', r));

  say(`round ${round}: writing ${CHANGES.toLocaleString('en')} changes…`);
  // No change-log triggers here: both sides read the WAL.
  const mix = await makeBacklog(src, CHANGES, undefined, { changeLog: false });
  // The insert position, not pg_current_wal_lsn() (the write position): with the cluster's synchronous_commit off
  // the last commits may not be written yet, and a side that had confirmed only up to there was stopped with the
  // backlog's last transaction still to apply (1 round in 10 left 500 deleted rows in cdc-sync's target).
  const end = await scalar<string>(src, 'SELECT pg_current_wal_insert_lsn()::text');

  // CPU of the PostgreSQL processes (walsender, apply worker or backend) while each side catches up, read before they exit.
  const postmaster = postmasterPid(cluster.dataDir);
  // BENCH_WAL_TIMELINE=1: per 100 ms, the CPU each process used while catching up.
  const timeline = (others?: () => number[]) => (process.env.BENCH_WAL_TIMELINE ? new CpuTimeline(postmaster, others) : undefined);
  let pgBefore = childrenCpu(postmaster);
  let started = performance.now();
  let sampling = timeline();
  await withClient(native, (c) => c.query(`ALTER SUBSCRIPTION ${nativeSlot} ENABLE`));
  const nativeSeconds = await confirmed(src, nativeSlot, end, started);
  for (const line of sampling?.stop() ?? []) say(line);
  let pgAfter = childrenCpu(postmaster);
  const nativeCpu = cpuBetween(pgBefore, pgAfter);
  if (process.env.BENCH_WAL_DETAIL) for (const line of cpuDetail(pgBefore, pgAfter)) say(`    ${line}`);
  say(`  PostgreSQL logical replication: ${nativeSeconds.toFixed(2)} s`);
  // Gone before cdc-sync's turn: its walsender would otherwise go on decoding (and filtering) the WAL cdc-sync's writes make on the same cluster.
  await withClient(native, (c) => c.query(`DROP SUBSCRIPTION ${nativeSlot}`));

  pgBefore = childrenCpu(postmaster);
  started = performance.now();
  child = run();
  sampling = timeline(() => [child.pid!]);
  const cdcSeconds = await confirmed(src, cdcSlot, end, started);
  for (const line of sampling?.stop() ?? []) say(line);
  pgAfter = childrenCpu(postmaster);
  const cdcPgCpu = cpuBetween(pgBefore, pgAfter);
  if (process.env.BENCH_WAL_DETAIL) for (const line of cpuDetail(pgBefore, pgAfter)) say(`    ${line}`);
  const cdcProcessCpu = cpuSeconds(child.pid!);
  child.kill('SIGINT');
  const exit = await new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  say(`  cdc-sync postgres-wal → postgres: ${cdcSeconds.toFixed(2)} s (exit ${exit}; ${cdcProcessCpu.toFixed(2)} CPU-s in the cdc-sync process)`);

  const [want, gotNative, gotCdc] = await Promise.all([tableDigest(src), tableDigest(native), tableDigest(cdc)]);
  for (const [name, got] of [['native', gotNative], ['cdc-sync', gotCdc]] as const) {
    if (got.md5 !== want.md5) {
      say(`  ${name}'s target differs from the source: ${got.rows} rows, the source ${want.rows}`);
      const ids = (url: string) => withClient(url, async (c) => new Set((await c.query<{ id: string }>('SELECT id::text AS id FROM public.items')).rows.map((r) => r.id)));
      const [a, b] = await Promise.all([ids(src), ids(name === 'native' ? native : cdc)]);
      const extra = [...b].filter((id) => !a.has(id)).map(Number).sort((x, y) => x - y);
      const missing = [...a].filter((id) => !b.has(id)).map(Number).sort((x, y) => x - y);
      say(`    extra ${extra.length}: ${extra.slice(0, 3).join(', ')} … ${extra.slice(-3).join(', ')}; missing ${missing.length}: ${missing.slice(0, 3).join(', ')}`);
    }
  }
  // Gone before the next round, so its walsenders have nothing of this one to read.
  await withClient(src, (c) => c.query(`SELECT pg_drop_replication_slot($1)`, [cdcSlot]));
  return {
    nativeSeconds,
    cdcSeconds,
    nativeCpu,
    cdcPgCpu,
    cdcProcessCpu,
    ratio: nativeSeconds / cdcSeconds,
    mix,
    equal: want.md5 === gotNative.md5 && want.md5 === gotCdc.md5,
    exit,
  };
}

async function main(): Promise<number> {
  const work = mkdtempSync(join(os.tmpdir(), 'cdc-sync-bench-wal-'));
  let cluster: PostgresCluster | undefined;
  try {
    cluster = await startPostgresCluster({
      // The launcher starts a subscription's worker at most once per wal_retrieve_retry_interval (5 s by default): later rounds would wait for it.
      // No TLS: the subscription's libpq would use it (sslmode=prefer) where cdc-sync's connections do not, and pay for it.
      extraSettings: { max_logical_replication_workers: '4', max_worker_processes: '16', wal_retrieve_retry_interval: '100ms', ssl: 'off' },
    });
    const version = await scalar<string>(cluster.url('postgres'), 'SHOW server_version');
    const rounds: Round[] = [];
    let mix: BacklogMix | undefined;
    let exit: number | null = 0;
    let equal = true;
    const counters = cpuCounters();
    for (let round = 1; round <= ROUNDS; round += 1) {
      const result = await runRound(cluster, work, round, say);
      rounds.push(result);
      mix = result.mix;
      if (result.exit !== 0) exit = result.exit;
      equal &&= result.equal;
    }
    const steal = stealShare(counters, cpuCounters());
    const median = [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor(rounds.length / 2)]!;
    const { nativeSeconds, cdcSeconds, nativeCpu, cdcPgCpu, cdcProcessCpu } = median;
    const nativeRate = CHANGES / nativeSeconds;
    const cdcRate = CHANGES / cdcSeconds;
    const ratio = median.ratio;
    const m = machine(version);
    const pass = ratio >= TARGET && equal && exit === 0;
    const section = [
      TITLE,
      '',
      `Recorded ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:wal\` (bench/wal.ts).`,
      '',
      `**Machine**: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node.js ${m.node}, PostgreSQL ${m.postgres}. CPU time taken by other guests of the host (steal) during the rounds: ${(100 * steal).toFixed(0)}%.`,
      '',
      `**Workload**: per round ${CHANGES.toLocaleString('en')} changes to \`public.items\` (${mix!.inserts.toLocaleString('en')} inserts, ${mix!.updates.toLocaleString('en')} updates, ${mix!.deletes.toLocaleString('en')} deletes, in set-based statements) written after both logical slots existed, each round on fresh databases and slots. Each side is timed from its start until its slot confirms the backlog's last LSN (both confirm only what is applied); the two run one after the other on one private cluster (fsync off).`,
      '',
      `Median of ${rounds.length} rounds (by ratio); every round: ${rounds.map((r) => `${r.ratio.toFixed(2)}× (${r.nativeSeconds.toFixed(2)} s / ${r.cdcSeconds.toFixed(2)} s)`).join(', ')}.`,
      '',
      '| | changes/s | time |',
      '|---|---:|---:|',
      `| PostgreSQL logical replication (CREATE SUBSCRIPTION, copy_data off) | ${Math.round(nativeRate).toLocaleString('en')} | ${nativeSeconds.toFixed(2)} s |`,
      `| cdc-sync postgres-wal → postgres (${BATCH === undefined ? 'default configuration' : `batch.maxSize ${BATCH}`}, start-up included) | ${Math.round(cdcRate).toLocaleString('en')} | ${cdcSeconds.toFixed(2)} s |`,
      '',
      `CPU while catching up (2 CPUs, so at most ${(2 * cdcSeconds).toFixed(1)} CPU-seconds for cdc-sync's run): native ${nativeCpu.toFixed(2)} s in PostgreSQL (walsender and apply worker); cdc-sync ${cdcPgCpu.toFixed(2)} s in PostgreSQL (walsender and the sink's backend) plus ${cdcProcessCpu.toFixed(2)} s in the cdc-sync process (start-up included): ${(cdcPgCpu + cdcProcessCpu).toFixed(2)} CPU-seconds against native's ${nativeCpu.toFixed(2)}, on the same two CPUs.`,
      '',
      `Ratio cdc-sync ÷ native: **${ratio.toFixed(2)}×** (target ≥ ${TARGET.toFixed(1)}×: ${ratio >= TARGET ? 'pass' : '**FAIL**'}). Both targets equal the source: ${equal ? 'yes' : 'NO'} (md5 of all rows in id order). cdc-sync exit after SIGINT: ${exit}.`,
      '',
      'Reproduce: `npm run bench:wal` (`BENCH_WAL_CHANGES`, default 300000; `BENCH_WAL_ROUNDS`, default 5; `BENCH_WAL_BATCH`, batch.maxSize, default none: the default configuration; `BENCH_WAL_DETAIL=1` prints the CPU of each PostgreSQL process; `BENCH_WAL_TIMELINE=1` the CPU of each busy process per 100 ms).',
      '',
    ].join('\n');
    publishSection(section, TITLE);
    return pass ? 0 : 1;
  } finally {
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

runBenchmark(main);
