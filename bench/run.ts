/**
 * `npm run bench`: drains a backlog of change-log changes into PostgreSQL with
 * the real `cdc-sync run`, compares it with the row-by-row loop of the older
 * scripts and records the result in BENCHMARKS.md (report.ts says what is
 * measured and how). Exit code 0 when every target is met, 1 when one is
 * missed, 2 when the benchmark itself failed.
 */
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBacklog, prepareSource, prepareTarget, tableDigest, withClient } from './backlog.js';
import { drain, startStream, type DrainResult } from './drain.js';
import { naiveLoop } from './naive.js';
import { NeighbourWatch, postmasterPid } from './proc.js';
import { checks, consoleTable, machine, markdownSection, writeSection, type Report, envInt, runBenchmark } from './report.js';
import { defaultBatchSize } from '../src/config/schema.js';
import { benchWorkspace, createDatabases } from './workspace.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<number> {
  const changes = envInt('BENCH_CHANGES', 1_000_000);
  const sweepSizes = (process.env.BENCH_BATCH_SIZES ?? '')
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n <= 0) throw new Error(`BENCH_BATCH_SIZES: ${JSON.stringify(s)} is not a positive integer`);
      return n;
    });
  // The default configuration (no batch block) first, then the sweep's sizes.
  const sizes: (number | undefined)[] = [undefined, ...new Set(sweepSizes)];
  const transactionRows = process.env.BENCH_TX_ROWS ? envInt('BENCH_TX_ROWS', 0) : null;
  const naiveChanges = envInt('BENCH_NAIVE_CHANGES', 20_000);
  const naiveSeconds = envInt('BENCH_NAIVE_SECONDS', 20);
  const cpuProfileDir = process.env.BENCH_CPU_PROF || undefined;
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
  const write = process.env.BENCH_WRITE !== '0';

  const workspace = benchWorkspace('drain', say);
  const workDir = workspace.dir;

  try {
    const loadBefore = os.loadavg();
    say(`cdc-sync benchmark: change-log → PostgreSQL, ${changes.toLocaleString('en-US')} changes, default configuration${sweepSizes.length > 0 ? `, then batch.maxSize ${sweepSizes.join(', ')}` : ''}`);
    say('starting a private PostgreSQL cluster…');
    const cluster = await workspace.start();
    const postgresVersion = await createDatabases(cluster, ['src', 'dst', 'naive']);
    const src = cluster.url('src');
    const dst = cluster.url('dst');
    await prepareSource(src);
    await prepareTarget(dst);
    await prepareTarget(cluster.url('naive'));
    say('starting the stream on the empty tables (cdc-sync run --once)…');
    await startStream({ sourceUrl: src, sinkUrl: dst, workDir });
    const checkpoints = await withClient(dst, async (client) => (await client.query<{ stream: string; position: string }>('SELECT stream, position FROM cdc_sync.checkpoints')).rows);

    say(`making the backlog (${changes.toLocaleString('en-US')} changes)…`);
    const backlogStarted = performance.now();
    let lastReport = 0;
    const mix = await makeBacklog(src, changes, (done) => {
      if (done - lastReport >= 100_000 || done === changes) {
        lastReport = done;
        process.stdout.write(`  ${done.toLocaleString('en-US')} changes\r`);
      }
    }, transactionRows === null ? {} : { transactionRows });
    const backlogSeconds = (performance.now() - backlogStarted) / 1000;
    say(`\nbacklog ready in ${backlogSeconds.toFixed(1)} s: ${mix.inserts} inserts, ${mix.updates} updates, ${mix.deletes} deletes`);
    const expected = await tableDigest(src);

    // The baseline first, on a quiet server (no autovacuum after a big drain): the ratio errs in its favour.
    say(`naive loop (one statement per change, up to ${naiveChanges} changes or ${naiveSeconds} s)…`);
    const naiveWatch = new NeighbourWatch();
    const naive = await naiveLoop({ sourceUrl: src, sinkUrl: cluster.url('naive'), maxChanges: naiveChanges, maxSeconds: naiveSeconds });
    const naiveBusy = naiveWatch.stop();
    say(`  ${Math.round(naive.changesPerSecond).toLocaleString('en-US')} changes/s`);

    const postmaster = postmasterPid(cluster.dataDir);
    const results: DrainResult[] = [];
    const busyDuring = new Map<number | null, string[]>();
    for (const [i, size] of sizes.entries()) {
      if (i > 0) {
        // Same burst again: empty the target and take the checkpoint back to before the burst.
        await withClient(dst, async (client) => {
          await client.query('TRUNCATE public.items, cdc_sync.dead_letters');
          await client.query('DELETE FROM cdc_sync.checkpoints');
          for (const c of checkpoints) await client.query('INSERT INTO cdc_sync.checkpoints (stream, position) VALUES ($1, $2)', [c.stream, c.position]);
        });
      }
      say(`draining with cdc-sync run (${size === undefined ? 'default configuration' : `batch.maxSize ${size}`})…`);
      let lastLine = 0;
      const watch = new NeighbourWatch();
      const result = await drain({
        sourceUrl: src,
        sinkUrl: dst,
        changes,
        batchSize: size,
        workDir,
        postmaster,
        cpuProfileDir: cpuProfileDir ? join(cpuProfileDir, `batch-${size}`) : undefined,
        nodeArgs,
        onProgress: (applied, elapsed) => {
          if (elapsed - lastLine >= 5 || applied >= changes) {
            lastLine = elapsed;
            process.stdout.write(`  ${applied.toLocaleString('en-US')} applied after ${elapsed.toFixed(1)} s\r`);
          }
        },
      });
      busyDuring.set(size ?? null, watch.stop());
      process.stdout.write('\n');
      const actual = await tableDigest(dst);
      if (actual.rows !== expected.rows || actual.md5 !== expected.md5) {
        throw new Error(`dst.items differs from src.items: ${actual.rows} rows md5 ${actual.md5}, expected ${expected.rows} rows md5 ${expected.md5}`);
      }
      say(`  ${Math.round(result.changesPerSecond).toLocaleString('en-US')} changes/s; dst equals src (${actual.rows} rows, md5 ${actual.md5})`);
      results.push(result);
    }


    const report: Report = {
      date: new Date(),
      machine: machine(postgresVersion),
      changes,
      mix,
      backlogSeconds,
      main: results[0]!,
      sweep: results,
      naive,
      loadBefore,
      neighbours: { drain: busyDuring.get(null) ?? [], naive: naiveBusy },
      defaultBatchSize: defaultBatchSize('postgres-changelog'),
      transactionRows,
      nodeArgs,
    };
    say('');
    say(consoleTable(report));
    if (write) {
      const file = join(ROOT, 'BENCHMARKS.md');
      writeSection(file, markdownSection(report));
      say(`\nwrote ${file}`);
    }
    return checks(report).every((c) => c.pass) ? 0 : 1;
  } finally {
    await workspace.stop();
  }
}


runBenchmark(main);
