import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { CliProcesses, runCli, runCliToEnd, waitFor, writeConfig, type CliProcess } from '../support/cli.js';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.js';
import { partitionOf } from '../../src/db/nats/envelope.js';

/**
 * PostgreSQL → NATS JetStream → PostgreSQL through the CLI: one stream
 * publishes the change log to a three-replica JetStream stream as
 * Debezium-shaped events, another applies them from a durable consumer.
 * The processes are killed (-9) and a NATS node is stopped while changes
 * flow; the target ends equal, and each change is applied at most once in
 * effect (the target counts its writes with a trigger).
 */
let a: TestDatabase;
let b: TestDatabase;
let nats: NatsCluster;
let client: NatsConnection;
const processes = new CliProcesses();

const SCHEMA = `
  CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL, born timestamptz, photo bytea, big bigint);
  CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent DEFERRABLE INITIALLY DEFERRED, note text);`;
const WRITES = `
  CREATE TABLE writes (n bigserial PRIMARY KEY, tbl text, id int);
  CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO writes (tbl, id) VALUES (TG_TABLE_NAME, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END); RETURN NULL; END $$;
  CREATE TRIGGER count_parent AFTER INSERT OR UPDATE OR DELETE ON parent FOR EACH ROW EXECUTE FUNCTION count_write();
  CREATE TRIGGER count_child AFTER INSERT OR UPDATE OR DELETE ON child FOR EACH ROW EXECUTE FUNCTION count_write();`;

function config(stream: string, snapshot: 'initial' | 'never' = 'initial', transactions = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-nats-'));
  return writeConfig(`
streams:
  - name: a-to-nats
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 100, snapshot: ${snapshot} }
    sink: { type: nats, url: "\${NATS_URL}", nats: { stream: ${stream}, subjectPrefix: ${stream.toLowerCase()}, replicas: 3, transactions: ${transactions} } }
    tables: [{ source: public.parent }, { source: public.child }]
    batch: { maxSize: 100, maxWaitMs: 20 }
    retry: { attempts: 100, minDelayMs: 50, maxDelayMs: 500 }
  - name: nats-to-b
    source: { type: nats, url: "\${NATS_URL}", idleIntervalMs: 200, nats: { stream: ${stream}, subjectPrefix: ${stream.toLowerCase()}, from: a-to-nats } }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables: [{ source: public.child, target: public.child }, { source: public.parent, target: public.parent }]
    batch: { maxSize: 100, maxWaitMs: 20 }
    retry: { attempts: 100, minDelayMs: 50, maxDelayMs: 500 }
checkpoints: { path: ${dir}/checkpoints.json }
deadLetters: { path: ${dir}/dead-letters.jsonl }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
}

function start(path: string): CliProcess {
  return processes.add(runCli(['run', '--config', path], { SOURCE_URL: a.url, SINK_URL: b.url, NATS_URL: nats.url }));
}

const ROWS = (db: TestDatabase) =>
  Promise.all([
    db.query(`SELECT id, name, born, encode(photo, 'hex') AS photo, big::text FROM parent ORDER BY id`),
    db.query(`SELECT id, parent_id, note FROM child ORDER BY id`),
  ]).then((r) => JSON.stringify(r));

async function equal(): Promise<boolean> {
  return (await ROWS(a)) === (await ROWS(b));
}

beforeAll(async () => {
  nats = await startNatsCluster(3);
  client = await connect({ servers: nats.url.split(',') });
  a = await createTestDatabase('nats_a');
  b = await createTestDatabase('nats_b');
  await a.query(SCHEMA);
  await b.query(SCHEMA);
  await b.query(WRITES);
  const init = await runCliToEnd(['init-sql', '--config', config('INIT')], { SOURCE_URL: a.url, SINK_URL: b.url, NATS_URL: nats.url });
  expect(init.code, init.stderr).toBe(0);
  await a.query(init.stdout.split(/^(?=-- stream ")/m).filter((p) => p.includes('"a-to-nats"')).join('\n'));
}, 60_000);

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await client?.close();
  await a?.drop();
  await b?.drop();
  await nats?.stop();
});

describe('postgres-changelog → nats → postgres through the CLI', () => {
  it('publishes Debezium-shaped events with message ids and transaction events around each batch, and the consumer stream applies them exactly', async () => {
    // No copy of existing rows: the messages below are the logged changes only.
    const cli = start(config('CDC_ONE', 'never', true));
    await a.query(`INSERT INTO parent VALUES (1, 'one', '2021-01-01T00:00:00.123Z', '\\x00ff', 9007199254740993)`);
    // Applied before the next change of the row: a batch keeps the last change of each key.
    await waitFor(equal, 30_000, () => cli.stderr().slice(-3000));
    // Children before their parent in one transaction; a key change; a delete.
    await a.query(`BEGIN; INSERT INTO child VALUES (10, 2, 'first'), (11, 2, 'second'); INSERT INTO parent VALUES (2, 'two', NULL, NULL, NULL); COMMIT`);
    await a.query(`UPDATE parent SET name = 'uno' WHERE id = 1`);
    await a.query(`UPDATE child SET id = 12 WHERE id = 11`);
    await a.query(`DELETE FROM child WHERE id = 10`);
    await waitFor(equal, 30_000, () => cli.stderr().slice(-3000));

    // The messages as a Debezium consumer reads them.
    const manager = await jetstreamManager(client);
    const info = await manager.streams.info('CDC_ONE');
    expect(info.config.num_replicas).toBe(3);
    expect(info.config.subjects).toEqual(['cdc_one.>']);
    const consumer = await jetstream(client).consumers.get('CDC_ONE');
    const messages = [];
    for await (const m of await consumer.fetch({ max_messages: 100, expires: 1000 })) messages.push(m);
    const first = messages.find((m) => m.subject === 'cdc_one.a-to-nats.public.parent')!;
    const envelope = first.json() as { op: string; before: unknown; after: Record<string, unknown>; source: Record<string, unknown>; transaction: Record<string, unknown> };
    expect(envelope.op).toBe('c');
    expect(envelope.before).toBeNull();
    // Values as the source captured them: the change log gives PostgreSQL's JSON forms (timestamptz with its offset,
    // bytea as \x hex); a source that reads instants and bytes publishes ISO 8601 and base64, typed in Cdc-Sync-Types.
    expect(envelope.after).toEqual({ id: 1, name: 'one', born: '2021-01-01T00:00:00.123+00:00', photo: '\\x00ff', big: 9007199254740993n.toString() });
    expect(envelope.source).toMatchObject({ connector: 'postgres-changelog', name: 'a-to-nats', schema: 'public', table: 'parent', snapshot: 'false' });
    expect(envelope.transaction).toMatchObject({ total_order: 1 });
    expect(first.headers?.get('Nats-Msg-Id')).toMatch(/^[\w-]{32}$/);
    expect(JSON.parse(first.headers!.get('Cdc-Sync-Key'))).toEqual({ id: 1 });
    // nats.transactions: BEGIN, the batch's changes, END counting them by table, on the stream's own subject.
    const changes = messages.filter((m) => m.subject !== 'cdc_one.a-to-nats');
    const framing = messages.filter((m) => m.subject === 'cdc_one.a-to-nats').map((m) => m.json() as { status: string; id: string; event_count: number | null; data_collections: { data_collection: string; event_count: number }[] | null });
    const batches = [...new Set(changes.map((m) => (m.json() as { transaction: { id: string } }).transaction.id))];
    expect(framing.map((t) => t.status)).toEqual(batches.flatMap(() => ['BEGIN', 'END']));
    for (const end of framing.filter((t) => t.status === 'END')) {
      const own = changes.filter((m) => (m.json() as { transaction: { id: string } }).transaction.id === end.id);
      expect(end.event_count).toBe(own.length);
      expect(end.data_collections!.reduce((n, c) => n + c.event_count, 0)).toBe(own.length);
    }
    const ops = changes.map((m) => `${m.subject.split('.').at(-1)} ${(m.json() as { op: string }).op}`);
    // The key change as delete(old) + create(new); the delete of 10.
    expect(ops).toEqual(expect.arrayContaining(['child d', 'parent u']));
    expect(ops.filter((o) => o === 'child d')).toHaveLength(2);
    await processes.stop(cli);
  }, 60_000);

  it('applies key partitions in parallel, each key in one partition and in order', async () => {
    await a.query(`TRUNCATE child, parent, cdc_sync.changes`);
    await b.query(`TRUNCATE child, parent, writes`);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-nats-'));
    const applying = (p: number) => `
  - name: nats-to-b-${p}
    source: { type: nats, url: "\${NATS_URL}", idleIntervalMs: 100, nats: { stream: CDC_PARTS, subjectPrefix: parts, from: a-to-nats, partitions: 2, partition: ${p} } }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables: [{ source: public.parent, target: public.parent }]
    batch: { maxSize: 7, maxWaitMs: 5 }`;
    const path = writeConfig(`
streams:
  - name: a-to-nats
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 50, snapshot: never }
    sink: { type: nats, url: "\${NATS_URL}", nats: { stream: CDC_PARTS, subjectPrefix: parts, replicas: 3, partitions: 2 } }
    tables: [{ source: public.parent }]
    batch: { maxSize: 50, maxWaitMs: 5 }${applying(0)}${applying(1)}
checkpoints: { path: ${dir}/checkpoints.json }
deadLetters: { path: ${dir}/dead-letters.jsonl }
http: { port: 0, host: 127.0.0.1 }
`);
    const cli = start(path);
    // Each key changed many times in quick succession: two consumers applying one key's changes could swap them.
    for (let round = 0; round < 30; round += 1) {
      const values = Array.from({ length: 20 }, (_, i) => `(${i + 1}, 'v${round}', NULL, NULL, ${round})`).join(', ');
      await a.query(`INSERT INTO parent VALUES ${values} ON CONFLICT (id) DO UPDATE SET name = excluded.name, big = excluded.big`);
    }
    await waitFor(equal, 60_000, () => cli.stderr().slice(-3000));
    const [{ name }] = (await b.query<{ name: string }>(`SELECT min(name) AS name FROM parent`)) as [{ name: string }];
    expect(name).toBe('v29');
    // Both partitions carried changes, and every key only ever one of them.
    const consumer = await jetstream(client).consumers.get('CDC_PARTS');
    const partitionsOfKey = new Map<string, Set<string>>();
    for await (const m of await consumer.fetch({ max_messages: 1000, expires: 1000 })) {
      const key = m.headers!.get('Cdc-Sync-Key');
      partitionsOfKey.set(key, (partitionsOfKey.get(key) ?? new Set()).add(m.subject.split('.').at(-1)!));
      if (m.info.pending === 0) break;
    }
    expect(partitionsOfKey.size).toBe(20);
    expect([...partitionsOfKey.values()].every((p) => p.size === 1)).toBe(true);
    expect(new Set([...partitionsOfKey.values()].flatMap((p) => [...p]))).toEqual(new Set(['0', '1']));
    const metrics = await cli.metrics();
    for (const p of [0, 1]) expect(metrics).toMatch(new RegExp(`cdc_sync_events_applied_total\\{[^}]*stream="nats-to-b-${p}"[^}]*\\} [1-9]`));
    await processes.stop(cli);
  }, 120_000);

  it('holds a child whose parent another partition applies, and applies it once that partition brought the parent', async () => {
    await a.query(`TRUNCATE child, parent, cdc_sync.changes`);
    await b.query(`TRUNCATE child, parent, writes`);
    // A parent and its child whose keys hash to different partitions.
    const parentId = [1, 2, 3, 4, 5, 6, 7, 8].find((id) => partitionOf({ id }, 2) === 0)!;
    const childId = [101, 102, 103, 104, 105, 106, 107, 108].find((id) => partitionOf({ id }, 2) === 1)!;
    const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-nats-'));
    const applying = (p: number) => `
  - name: nats-to-b-${p}
    source: { type: nats, url: "\${NATS_URL}", idleIntervalMs: 100, nats: { stream: CDC_HELD, subjectPrefix: held, from: a-to-nats, partitions: 2, partition: ${p} } }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables: [{ source: public.parent, target: public.parent }, { source: public.child, target: public.child }]
    batch: { maxSize: 50, maxWaitMs: 5 }
    retry: { attempts: 100, minDelayMs: 50, maxDelayMs: 500 }`;
    const files = (name: string) => `
checkpoints: { path: ${dir}/${name}-checkpoints.json }
deadLetters: { path: ${dir}/${name}-dead-letters.jsonl }
http: { port: 0, host: 127.0.0.1 }
log: { level: debug }
`;
    // The publisher and the child's partition first; the parent's partition only later (its process was down).
    const first = start(
      writeConfig(`
streams:
  - name: a-to-nats
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 50, snapshot: never }
    sink: { type: nats, url: "\${NATS_URL}", nats: { stream: CDC_HELD, subjectPrefix: held, replicas: 3, partitions: 2 } }
    tables: [{ source: public.parent }, { source: public.child }]
    batch: { maxSize: 50, maxWaitMs: 5 }${applying(1)}${files('first')}`),
    );
    await a.query(`BEGIN; INSERT INTO child VALUES (${childId}, ${parentId}, 'waits'); INSERT INTO parent VALUES (${parentId}, 'comes later', NULL, NULL, NULL); COMMIT`);
    // The child's partition read it and found no parent.
    await waitFor(() => /"stream":"nats-to-b-1".*JetStream messages read/.test(first.stderr()), 30_000, () => first.stderr().slice(-3000));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await b.query(`SELECT id FROM child`)).toEqual([]);
    // The operator is told once, with the table (never the row).
    expect(first.stderr().match(/"stream":"nats-to-b-1".*"tables":\{"public.child":1\}.*changes held until their parent arrives/g)).toHaveLength(1);
    const second = start(writeConfig(`\nstreams:${applying(0)}${files('second')}`));
    await waitFor(equal, 60_000, () => `${first.stderr().slice(-3000)}\n${second.stderr().slice(-2000)}`);
    expect(existsSync(`${dir}/first-dead-letters.jsonl`) ? readFileSync(`${dir}/first-dead-letters.jsonl`, 'utf8') : '').toBe('');
    await processes.stop(first);
    await processes.stop(second);
  }, 120_000);

  it('ends equal with each change applied at most once, through kill -9 of cdc-sync and a stopped NATS node', async () => {
    await a.query(`TRUNCATE child, parent, cdc_sync.changes`);
    await b.query(`TRUNCATE child, parent, writes`);
    const path = config('CDC_FAULTS');
    let cli = start(path);
    let changes = 0;
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i += 1) {
        const id = 100 + (i % 150);
        await a.query(`INSERT INTO parent VALUES ($1::int, 'p' || $1::text, now(), NULL, $1::bigint) ON CONFLICT (id) DO UPDATE SET name = excluded.name || '+'`, [id]);
        await a.query(`INSERT INTO child VALUES ($1, $2, 'c') ON CONFLICT (id) DO UPDATE SET note = child.note || '+'`, [id * 10, id]);
        changes += 2;
        if (i % 7 === 3) {
          await a.query(`DELETE FROM child WHERE id = $1`, [id * 10]);
          changes += 1;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    for (let round = 0; round < 3; round += 1) {
      await new Promise((r) => setTimeout(r, 700 + round * 300));
      cli.child.kill('SIGKILL');
      await cli.exited;
      processes.forget(cli);
      if (round === 1) await nats.stopNode(2);
      cli = start(path);
    }
    await new Promise((r) => setTimeout(r, 1000));
    writing = false;
    await writer;
    await waitFor(equal, 60_000, () => cli.stderr().split('\n').filter((l) => !l.includes('left out')).slice(-60).join('\n'));
    await nats.startNode(2);
    const [{ n }] = (await b.query<{ n: string }>(`SELECT count(*)::text AS n FROM writes`)) as [{ n: string }];
    // At most one write per change (fewer: a batch keeps the last change of each key).
    expect(Number(n)).toBeGreaterThan(0);
    expect(Number(n)).toBeLessThanOrEqual(changes);
    const [{ letters }] = (await b.query<{ letters: string }>(`SELECT count(*)::text AS letters FROM cdc_sync.dead_letters`)) as [{ letters: string }];
    expect(letters).toBe('0');
    await processes.stop(cli);
  }, 120_000);
});
