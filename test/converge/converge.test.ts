import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { history, parseHistory } from './history.js';
import { Pair } from './pair.js';
import { PostgresSide } from './postgres-side.js';
import type { Side } from './sides.js';
import { SqliteSide } from './sqlite-side.js';
import { MSSQL_DRIVER, MssqlSide } from './mssql-side.js';
import { MssqlQueueSide } from './mssql-queue-side.js';
import { SupabaseSide } from './supabase-side.js';
import type { PostgresCluster } from '../support/postgres-cluster.js';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.js';
import { pgServer, startPrivateServer, type PgServer } from '../support/test-database.js';

/**
 * The convergence checker: random histories of edits on both sides (inserts,
 * updates, deletes, key changes, re-inserts, children before parents in one
 * transaction, transactions larger than batch.maxSize, the same row edited
 * on both sides, NULLs and edge values) with cdc-sync killed (-9) and
 * restarted, and the PostgreSQL server crashed and restarted, between
 * steps. After each history: both sides equal, equal to what the conflict
 * rule says should win, no dead letter, no echo. A failure shrinks to a
 * minimal history and prints it with its seed.
 *
 * CONVERGE_RUNS (default 12) cases per pair; CONVERGE_SEED replays one run;
 * CONVERGE_HISTORY runs one history as a failure printed it (its JSON), once;
 * CONVERGE_PAIR picks pairs by the start of their names (`a|b`);
 * CONVERGE_MINUTES bounds a pair's run with its shrinking (default 4 for the
 * 12 cases of `npm test`, so a failure cannot hold CI up; then what was
 * shrunk so far is reported). CONVERGE_PARALLEL runs that many histories at
 * once against the pair (each in its own key range; one history's faults
 * hit the others too), for long runs: a history mostly waits for changes
 * to cross. `npm run converge -- --runs N --seed S --pair P --parallel K`.
 */
const RUNS = Number(process.env.CONVERGE_RUNS ?? 12);
const MINUTES = Number(process.env.CONVERGE_MINUTES ?? (process.env.CONVERGE_RUNS === undefined ? 4 : RUNS / 20 + 10));
const SEED = process.env.CONVERGE_SEED === undefined ? undefined : Number(process.env.CONVERGE_SEED);
const PATH = process.env.CONVERGE_PATH;
/** One history as a failure printed it (JSON), run once. */
const HISTORY = process.env.CONVERGE_HISTORY;
/** Pairs whose names start with one of these (separated by "|"). */
const ONLY = process.env.CONVERGE_PAIR?.split('|');
const PARALLEL = SEED === undefined ? Math.max(1, Number(process.env.CONVERGE_PARALLEL ?? 1)) : 1;
/**
 * Histories may start from rows that exist before capture (CONVERGE_EXISTING=0 leaves that step out). Its one
 * failure (seed 1770077417, postgres-changelog: rows written before capture never reached b after their copy)
 * matches a read loop of a given-up subscription moving the copy on after the new one had started (fixed in
 * ReadGeneration); it did not recur in the long runs since.
 */
const EXISTING = process.env.CONVERGE_EXISTING !== '0';

interface PairSpec {
  name: string;
  twoWay: boolean;
  sides: (server: PgServer) => Promise<[Side, Side]>;
  /** cdc-sync runs in this process (an embedded database only one process can open); no server to crash. */
  inProcess?: boolean;
  /** Environment of the cdc-sync process (the SQL Server stand-in's driver). */
  env?: Record<string, string>;
  /** Its stand-ins keep connections to the database that a server crash would end for good: no restart faults. */
  noRestarts?: boolean;
  /** Realtime outages as fault steps. */
  outages?: boolean;
  tableOptions?: string;
  /** Streams whose source can copy existing rows, for the copy steps. */
  copies?: string[];
  /** The forward stream goes through a three-node NATS JetStream cluster; its outages stop one node. */
  viaNats?: boolean;
  /** Through NATS: key partitions, each applied by a stream of its own. */
  partitions?: number;
}

const BOTH = ['a-to-b', 'b-to-a'];

// Each pair has its own PostgreSQL server, so a history can crash and restart it.
const PAIRS: PairSpec[] = [
  { name: 'postgres-changelog ⇄ postgres', twoWay: true, copies: BOTH, sides: async (server) => [await PostgresSide.create('a', { server }), await PostgresSide.create('b', { server })] },
  // newer-wins by the rows' updated-at column (an application's trigger keeps it): the column decides between updates, change times where a delete is involved.
  {
    name: 'postgres-changelog ⇄ postgres, newer-wins by updatedAt',
    twoWay: true,
    copies: BOTH,
    tableOptions: 'conflict: newer-wins, updatedAt: updated_at',
    sides: async (server) => [await PostgresSide.create('a', { server, updatedAt: true }), await PostgresSide.create('b', { server, updatedAt: true })],
  },
  {
    name: 'sqlite-changelog ⇄ postgres, newer-wins by updatedAt',
    twoWay: true,
    copies: BOTH,
    tableOptions: 'conflict: newer-wins, updatedAt: updated_at',
    sides: async (server) => [SqliteSide.create('a', { updatedAt: true }), await PostgresSide.create('b', { server, updatedAt: true })],
  },
  { name: 'sqlite-changelog ⇄ postgres', twoWay: true, copies: BOTH, sides: async (server) => [SqliteSide.create('a'), await PostgresSide.create('b', { server })] },
  { name: 'postgres-wal → postgres', twoWay: false, copies: ['a-to-b'], sides: async (server) => [await PostgresSide.create('a', { wal: true, server }), await PostgresSide.create('b', { server })] },
  { name: 'sqlite-changelog ⇄ pglite', twoWay: true, inProcess: true, copies: BOTH, sides: async () => [SqliteSide.create('a'), await PostgresSide.createPglite('b')] },
  // Through NATS JetStream: a-to-b publishes the change log, nats-to-b applies it; an outage stops one of three nodes.
  { name: 'postgres-changelog → nats → postgres', twoWay: false, copies: ['a-to-b'], viaNats: true, outages: true, sides: async (server) => [await PostgresSide.create('a', { server }), await PostgresSide.create('b', { server })] },
  // The same with two key partitions applied concurrently: a child may now come before its parent (held until it is there).
  {
    name: 'postgres-changelog → nats (2 partitions) → postgres',
    twoWay: false,
    copies: ['a-to-b'],
    viaNats: true,
    partitions: 2,
    outages: true,
    sides: async (server) => [await PostgresSide.create('a', { server }), await PostgresSide.create('b', { server })],
  },
  // SQL Server through its stand-in (test/support/fake-mssql), which logs key changes both ways SQL Server does.
  {
    name: 'mssql-cdc (stand-in) → postgres',
    twoWay: false,
    copies: ['a-to-b'],
    env: { CDC_SYNC_MSSQL_DRIVER: MSSQL_DRIVER },
    sides: async (server) => [await MssqlSide.create('a'), await PostgresSide.create('b', { server })],
  },
  // The same stand-in published to NATS JetStream and applied from there (issue 21: SQL Server → NATS → PostgreSQL).
  {
    name: 'mssql-cdc (stand-in) → nats → postgres',
    twoWay: false,
    copies: ['a-to-b'],
    viaNats: true,
    outages: true,
    env: { CDC_SYNC_MSSQL_DRIVER: MSSQL_DRIVER },
    sides: async (server) => [await MssqlSide.create('a'), await PostgresSide.create('b', { server })],
  },
  // Both ways through the SyncQueue: the mssql sink resolves by change time against the queue the triggers fill.
  {
    name: 'mssql-queue (stand-in) ⇄ postgres',
    twoWay: true,
    copies: BOTH,
    // init-sql writes each trigger from the key, without a connection to SQL Server.
    tableOptions: 'key: [id]',
    env: { CDC_SYNC_MSSQL_DRIVER: MSSQL_DRIVER },
    sides: async (server) => [await MssqlQueueSide.create('a'), await PostgresSide.create('b', { server })],
  },
  // The same under newer-wins by the rows' updated-at column: the mssql sink's MERGE compares it, and a change that meets a delete is judged by change time against the queue.
  {
    name: 'mssql-queue (stand-in) ⇄ postgres, newer-wins by updatedAt',
    twoWay: true,
    copies: BOTH,
    tableOptions: 'key: [id], conflict: newer-wins, updatedAt: updated_at',
    env: { CDC_SYNC_MSSQL_DRIVER: MSSQL_DRIVER },
    sides: async (server) => [await MssqlQueueSide.create('a', { updatedAt: true }), await PostgresSide.create('b', { server, updatedAt: true })],
  },
  // Supabase through its PostgREST and Realtime stand-ins (Supabase's roles and grants), with Realtime outages as faults.
  {
    name: 'supabase-realtime (stand-ins) → postgres',
    twoWay: false,
    copies: ['a-to-b'],
    noRestarts: true,
    outages: true,
    tableOptions: 'updatedAt: updated_at',
    sides: async (server) => [await SupabaseSide.create('a', server), await PostgresSide.create('b', { server })],
  },
  // Both ways: the supabase sink's change-time rule runs in the portal's database (cdc_sync.newer_wins).
  {
    name: 'supabase-realtime (stand-ins) ⇄ postgres',
    twoWay: true,
    // The portal's stream copies as a catch-up read from the start; the one back from PostgreSQL from its change log.
    copies: BOTH,
    noRestarts: true,
    outages: true,
    tableOptions: 'updatedAt: updated_at',
    sides: async (server) => [await SupabaseSide.create('a', server), await PostgresSide.create('b', { server })],
  },
];

for (const spec of PAIRS.filter((p) => !ONLY || ONLY.some((prefix) => p.name.startsWith(prefix)))) {
  describe(`convergence: ${spec.name}`, () => {
    let pair: Pair;
    let cluster: PostgresCluster | undefined;
    let nats: NatsCluster | undefined;
    let natsOutages = 0;
    /** The NATS outage under way: lanes of a parallel run take turns, so only one node of three is ever down (a quorum stays). */
    let natsOutage: Promise<void> = Promise.resolve();
    /** Sides that can hold rows no change log saw, whose stream can copy them. */
    let existing: ('a' | 'b')[] = [];

    beforeAll(async () => {
      const started = spec.inProcess ? undefined : await startPrivateServer();
      if (spec.viaNats) nats = await startNatsCluster(3);
      cluster = started?.cluster;
      const [a, b] = await spec.sides(started?.server ?? pgServer());
      const untracked = (side: Side) => side.applyUntracked !== undefined && !(side instanceof PostgresSide && side.wal);
      existing = EXISTING ? (['a', 'b'] as const).filter((s) => untracked(s === 'a' ? a : b) && (spec.copies ?? []).includes(s === 'a' ? 'a-to-b' : 'b-to-a')) : [];
      pair = new Pair(a, b, {
        name: spec.name,
        twoWay: spec.twoWay,
        inProcess: spec.inProcess ?? false,
        ...(spec.env ? { env: spec.env } : {}),
        ...(spec.tableOptions ? { tableOptions: spec.tableOptions } : {}),
        ...(spec.copies ? { copies: spec.copies } : {}),
        ...(nats ? { via: { nats: nats.url, ...(spec.partitions ? { partitions: spec.partitions } : {}) } } : {}),
        outage: async () => {
          if (nats) {
            // One node of three down for a moment (a crash): the streams' replicas keep a quorum. Two lanes' outages at
            // once took two nodes down, and JetStream answered nothing until both were back (two failures in a long run).
            const cluster = nats;
            const outage = natsOutage.then(async () => {
              const node = natsOutages++ % 3;
              await cluster.stopNode(node, 'SIGKILL');
              await new Promise((r) => setTimeout(r, 300));
              await cluster.startNode(node);
            });
            // The next outage waits until the node has had time to rejoin the cluster, not only to listen.
            natsOutage = outage.then(
              () => new Promise<void>((r) => setTimeout(r, 2000)),
              () => undefined,
            );
            await outage;
            return;
          }
          if (!(a instanceof SupabaseSide)) throw new Error('this pair has no Realtime');
          await a.outage();
        },
        ...(started && !spec.noRestarts ? { restartDatabase: () => started.cluster.restart('immediate') } : {}),
      });
      await pair.start();
    }, 60_000);

    afterAll(async () => {
      await pair?.stop();
      await cluster?.stop();
      await nats?.stop();
    });

    it('ends with both sides equal to the winning edits, no dead letter and no echo, for random histories with kills', async () => {
      const histories = history({ sides: spec.twoWay ? ['a', 'b'] : ['a'], kills: true, restarts: !spec.inProcess && !spec.noRestarts, outages: spec.outages ?? false, copies: spec.copies ?? [], copiesAtStart: !spec.inProcess, existing });
      const property = fc.asyncProperty(histories, (steps) => pair.run(steps));
      if (HISTORY !== undefined) {
        // Exactly the history a failure printed (fast-check's seed and path do not reach a counterexample's shrink again).
        await pair.run(parseHistory(HISTORY));
        console.log(`convergence: ${spec.name}: the given history converged`);
        return;
      }
      const started = Date.now();
      const first = SEED ?? Math.floor(Math.random() * 2 ** 31);
      // Lanes of one long run: each its own seed and share of the histories.
      const all = await Promise.all(
        Array.from({ length: PARALLEL }, (_, lane) =>
          fc.check(property, {
            numRuns: Math.ceil(RUNS / PARALLEL),
            seed: first + lane,
            path: PATH,
            endOnFailure: PATH !== undefined,
            interruptAfterTimeLimit: MINUTES * 60_000,
          }),
        ),
      );
      const runs = all.reduce((n, d) => n + d.numRuns, 0);
      const failed = all.find((d) => d.failed);
      const seconds = Math.round((Date.now() - started) / 1000);
      console.log(
        `convergence: ${spec.name}: ${runs} histories in ${seconds} s${PARALLEL > 1 ? ` (${PARALLEL} at a time)` : ''}, ${failed ? 'failed' : 'all converged'}${all.some((d) => d.interrupted) ? ' (stopped at the time limit)' : ''}, seed ${first}${PARALLEL > 1 ? `…${first + PARALLEL - 1}` : ''}`,
      );
      if (failed) throw new Error(`${fc.defaultReportMessage(failed) ?? 'failed'}\n\n${String((failed.errorInstance as Error | undefined)?.message ?? failed.errorInstance)}`);
      expect(runs).toBeGreaterThan(0);
    }, (MINUTES + 2) * 60_000);
  });
}
