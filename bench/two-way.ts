/**
 * `npm run bench:two-way`: PostgreSQL ⇄ PostgreSQL both ways with the
 * default configuration, whose conflict rule (newer change wins by change
 * time) looks every incoming batch's keys up in the target's own change log.
 * Both streams start on the empty tables, then a burst of
 * BENCH_TWO_WAY_CHANGES changes (100,000) lands on each side at once (ids
 * apart, so no change loses and every one is applied), and `cdc-sync run`
 * drains both; the two sides must then be equal. Recorded, no targets.
 */
import os from 'node:os';
import { makeBacklog, prepareSource, tableDigest, type BacklogMix } from './backlog.js';
import { drain, startStream } from './drain.js';
import { SHIPPED_NODE_ARGS } from './node-args.js';
import { NeighbourWatch, postmasterPid } from './proc.js';
import { envInt, machine, publishSection, runBenchmark } from './report.js';
import { defaultBatchSize } from '../src/config/schema.js';
import { benchWorkspace, createDatabases } from './workspace.js';

const TITLE = '## Two-way: a burst on both sides';
/** Side b's ids start here, far above side a's. */
const B_FIRST_ID = 100_000_001;

const say = (text: string) => process.stdout.write(`${text}\n`);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

async function main(): Promise<number> {
  const changes = envInt('BENCH_TWO_WAY_CHANGES', 100_000);
  const workspace = benchWorkspace('two-way', say);
  try {
    const loadBefore = os.loadavg();
    say(`cdc-sync benchmark: two-way PostgreSQL ⇄ PostgreSQL, ${int(changes)} changes on each side, default configuration`);
    const cluster = await workspace.start();
    const postgresVersion = await createDatabases(cluster, ['side_a', 'side_b']);
    const [a, b] = [cluster.url('side_a'), cluster.url('side_b')];
    // Each side is a source (the change-log triggers) and the other's target.
    await prepareSource(a);
    await prepareSource(b);
    const table = [{ source: 'public.items', target: 'public.items' }];
    const streams = [
      { name: 'a-to-b', source: { type: 'postgres-changelog', url: a }, sink: { type: 'postgres', url: b }, tables: table },
      { name: 'b-to-a', direction: 'reverse', source: { type: 'postgres-changelog', url: b }, sink: { type: 'postgres', url: a }, tables: table },
    ];
    const workDir = workspace.dir;
    say('starting both streams on the empty tables (cdc-sync run --once)…');
    await startStream({ sourceUrl: a, sinkUrl: b, workDir, streams, label: 'two-way' });

    say(`making the bursts (${int(changes)} changes on each side, at once)…`);
    const burstStarted = performance.now();
    const [mix] = await Promise.all([makeBacklog(a, changes), makeBacklog(b, changes, undefined, { firstId: B_FIRST_ID })]);
    const burstSeconds = (performance.now() - burstStarted) / 1000;

    say('draining both ways with cdc-sync run (default configuration)…');
    const postmaster = postmasterPid(cluster.dataDir);
    const watch = new NeighbourWatch();
    watch.own(postmaster);
    let lastLine = 0;
    const result = await drain({
      sourceUrl: a,
      sinkUrl: b,
      changes: 2 * changes,
      workDir,
      postmaster,
      streams,
      label: 'two-way',
      onProgress: (applied, elapsed) => {
        if (elapsed - lastLine >= 5) {
          lastLine = elapsed;
          process.stdout.write(`  ${int(applied)} applied after ${elapsed.toFixed(1)} s\r`);
        }
      },
    });
    const neighbours = watch.stop();
    process.stdout.write('\n');
    const [da, db] = [await tableDigest(a), await tableDigest(b)];
    if (da.rows !== db.rows || da.md5 !== db.md5) throw new Error(`the sides differ: a ${da.rows} rows md5 ${da.md5}, b ${db.rows} rows md5 ${db.md5}`);
    say(`  ${int(result.changesPerSecond)} changes/s both ways together, ${result.seconds.toFixed(2)} s; the sides are equal (${int(da.rows)} rows)`);

    const m = machine(postgresVersion);
    const share = (n: number) => ((n / changes) * 100).toFixed(0);
    publishSection(
      [
        TITLE,
        '',
        `Recorded ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} by \`npm run bench:two-way\` (bench/two-way.ts).`,
        '',
        `**Machine**: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB memory, ${m.kernel}, Node.js ${m.node}, ${m.postgres}. ` +
          `Load average (1/5/15 min) at the start: ${loadBefore.map((l) => l.toFixed(2)).join(' / ')}.`,
        '',
        `**Workload**: two databases of one private cluster (fsync, synchronous_commit and full_page_writes off), each with bench/run.ts's \`items\` table and the change-log set-up, synced both ways by one \`cdc-sync run\` (streams a-to-b and b-to-a) with the **default configuration**: ` +
          `no \`batch\` block (\`maxSize\` ${defaultBatchSize('postgres-changelog')}), no \`conflict\` setting, so each sink judges every incoming batch by change time against its own database's change log (README "Conflicts"). ` +
          'Both streams first start on the empty tables (`cdc-sync run --once`). ' +
          `Then a burst of ${int(changes)} changes is written on each side at once (${share(mix.inserts)} % inserts, ${share(mix.updates)} % updates, ${share(mix.deletes)} % deletes, in set-based statements of up to 8,000 rows, bench/backlog.ts; side b's ids from ${int(B_FIRST_ID)}), ` +
          `taking ${burstSeconds.toFixed(1)} s, not part of the result, with no ANALYZE after it. ` +
          `\`cdc-sync run\` (the built CLI, a child process, Node.js options as shipped: \`${SHIPPED_NODE_ARGS.join(' ')}\`) then drains both until \`cdc_sync_events_applied_total\` of both streams reaches ${int(2 * changes)}; ` +
          'the two tables must then be equal (row count and md5 of all rows in id order), and the process, stopped with SIGINT, must exit 0.',
        '',
        '| changes (both ways) | changes/s | drain time | batches | mean batch | p99 batch | peak RSS | CPU cdc-sync / PostgreSQL |',
        '|---:|---:|---:|---:|---:|---:|---:|---:|',
        `| ${int(2 * changes)} | **${int(result.changesPerSecond)}** | ${result.seconds.toFixed(2)} s (start-up ${result.startupSeconds.toFixed(2)} s) | ${int(result.batches)} | ` +
          `${(result.meanBatchSeconds * 1000).toFixed(0)} ms | ${result.p99 ? `${(result.p99.estimate * 1000).toFixed(0)} ms` : 'n/a'} | ${mb(result.peakRssBytes)} | ${result.childCpuSeconds.toFixed(1)} s / ${result.postgresCpuSeconds.toFixed(1)} s |`,
        '',
        `Rows after the drain: ${int(da.rows)} on each side. Other processes using ≥ 10 % of a CPU during the drain: ${neighbours.length === 0 ? 'none' : neighbours.join(', ')}.`,
        '',
        'Notes:',
        '',
        '- Most of a batch\'s time is that lookup: it reads every change of the target\'s log captured since the batch\'s oldest change and picks the batch\'s keys out of them (the log has no index by key), ' +
          'so while both sides are busy each batch reads the other burst again: about 245 ms for 100,000 local changes (measured alone, 4,762 keys). An index by key in the change log would make it a lookup per key; until then a two-way burst drains far slower than a one-way backlog (`npm run bench`, above).',
        '- Measured 2026-12-05 before the lookup\'s two CTEs were MATERIALIZED (commit 5c19f75): the planner, which estimates the log\'s recent end at a row or two, rebuilt the batch\'s keys once per local change, and with ' +
          '`BENCH_TWO_WAY_CHANGES=20000` not one batch was applied in 120 s (the benchmark gave up); after it, the same run drained 40,000 changes in 1.41 s (28,450 changes/s).',
        '',
        'Reproduce: `npm run bench:two-way` (needs the PostgreSQL server binaries). Environment: `BENCH_TWO_WAY_CHANGES` (per side, default 100000), `BENCH_WRITE=0` (do not touch BENCHMARKS.md).',
        '',
      ].join('\n'),
      TITLE,
    );
    return 0;
  } finally {
    await workspace.stop();
  }
}

runBenchmark(main);
