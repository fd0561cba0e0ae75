import { Subject, firstValueFrom, take, toArray } from 'rxjs';
import { headers } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { NatsSource } from '../../../src/cdc/nats/nats-source.js';
import type { SourceChunk } from '../../../src/core/change-event.js';
import { encodeChange, encodeTransaction } from '../../../src/db/nats/envelope.js';
import { natsForTests } from '../../support/nats-cluster.js';
import { testContext } from '../../support/stream-context.js';
import { stepper } from '../../support/pull.js';

/** The nats source against a real (one-node) JetStream server, fed the way the nats sink publishes. */
const nats = natsForTests(1);
let streams = 0;

/** A JetStream stream of its own, and `publish(batch)` as the sink sends one batch. */
async function freshStream(): Promise<{ name: string; publish: (ids: number[], table?: string, more?: boolean, size?: number) => Promise<void> }> {
  const name = `S${++streams}`;
  await (await jetstreamManager(nats.client())).streams.add({ name, subjects: [`${name.toLowerCase()}.>`] });
  let position = 0;
  return {
    name,
    async publish(ids, table = 'public.items', more = false, size = ids.length) {
      const js = jetstream(nats.client());
      for (const [i, id] of ids.entries()) {
        const encoded = encodeChange(
          { table, op: 'insert', key: { id }, row: { id, name: `n${id}` }, position: String(++position), commitTime: new Date() },
          { prefix: name.toLowerCase(), stream: 'pub', connector: 'test', batch: 'b', order: i + 1, size, tableOrder: i + 1, more },
        );
        const h = headers();
        for (const [k, v] of Object.entries(encoded.headers)) h.set(k, v);
        await js.publish(encoded.subject, encoded.data, { headers: h });
      }
    },
  };
}

function source(stream: string, readLimit = 100, partition?: { of: number; index: number }): { source: NatsSource; context: ReturnType<typeof testContext> } {
  const context = testContext('sub');
  const s = new NatsSource({
    url: nats.cluster().url,
    stream,
    subjectPrefix: stream.toLowerCase(),
    replicas: 1,
    duplicateWindowSeconds: 120,
    partitions: partition?.of ?? 1,
    partition: partition?.index,
    tables: [{ source: 'public.items', target: '' }],
    from: 'pub',
    consumer: 'cdc-sync_sub',
    readLimit,
    idleIntervalMs: 200,
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
    timeoutMs: 5000,
  });
  return { source: s, context };
}

/** A source opened on `stream`, read one chunk at a time from the start, as the stream does. */
async function reading(stream: string, readLimit?: number): Promise<{ source: NatsSource; reader: ReturnType<typeof stepper> }> {
  const { source: s, context } = source(stream, readLimit);
  await s.open(context);
  return { source: s, reader: stepper(s, null) };
}

const ids = (chunk: SourceChunk) => chunk.events.map((e) => e.key.id);

describe('nats source', () => {
  it('reads past readLimit to the end of a published batch (whole source transactions)', async () => {
    const { name, publish } = await freshStream();
    await publish([1, 2, 3, 4, 5]);
    await publish([6]);
    const { source: s, context } = source(name, 2);
    await s.open(context);
    const chunks = await firstValueFrom(s.chunks(null, new Subject<void>()).pipe(take(1), toArray()));
    expect(ids(chunks[0]!)).toEqual([1, 2, 3, 4, 5]);
    expect(chunks[0]!.position).toMatch(new RegExp(`^${name}@\\d+:5$`));
    await s.close();
  });

  it("passes over the publishing stream's transaction events (nats.transactions): its consumer takes only the change subjects", async () => {
    const { name, publish } = await freshStream();
    const js = jetstream(nats.client());
    const prefix = name.toLowerCase();
    const begin = encodeTransaction(prefix, 'pub', 'b', 'BEGIN');
    await js.publish(begin.subject, begin.data);
    await publish([1, 2]);
    const end = encodeTransaction(prefix, 'pub', 'b', 'END', new Map([['public.items', 2]]));
    await js.publish(end.subject, end.data);
    await publish([3]);
    const { source: s, reader } = await reading(name);
    const first = (await reader.next(5000))!;
    const read = [...ids(first), ...(first.events.length < 3 ? ids((await reader.next(5000))!) : [])];
    expect(read).toEqual([1, 2, 3]);
    expect(first.rejected).toEqual([]);
    reader.stop();
    await s.close();
  });

  it('of one key partition, idle while the stream holds changes for a missing parent, hands on an empty chunk so they are tried again; idle holding none, nothing', async () => {
    const { name } = await freshStream();
    const encoded = encodeChange(
      { table: 'public.items', op: 'insert', key: { id: 1 }, row: { id: 1, name: 'child' }, position: '1', commitTime: new Date() },
      { prefix: name.toLowerCase(), stream: 'pub', connector: 'test', batch: 'b', order: 1, size: 1, tableOrder: 1, partition: { index: 1, order: 1, size: 1 } },
    );
    const h = headers();
    for (const [k, v] of Object.entries(encoded.headers)) h.set(k, v);
    await jetstream(nats.client()).publish(encoded.subject, encoded.data, { headers: h });
    const { source: s, context } = source(name, 100, { of: 2, index: 1 });
    await s.open(context);
    const reader = stepper(s, null);
    const first = (await reader.next(5000))!;
    expect(ids(first)).toEqual([1]);
    // Its parent may be in the other partition: not "nothing pending", though this partition has nothing more.
    expect(first.readsPending).toBe(true);
    s.holding(0);
    expect(await reader.next(1000)).toBeNull();
    s.holding(1);
    const retry = (await reader.next(2000))!;
    expect(retry).toEqual({ events: [], rejected: [], position: first.position, caughtUp: true, readsPending: true });
    reader.stop();
    await s.close();
  });

  it('hands on changes read but not committed again at once after a restart, and none before the checkpoint', async () => {
    const { name, publish } = await freshStream();
    await publish([1]);
    await publish([2]);
    await publish([3]);
    const { source: s, reader } = await reading(name, 1);
    const first = [(await reader.next(10_000))!, (await reader.next(10_000))!];
    reader.stop();
    // Only the first chunk was committed; the second (2) was handed on and never applied.
    const started = Date.now();
    const again = await firstValueFrom(s.chunks(first[0]!.position, new Subject<void>()));
    expect(ids(again)).toEqual([2]);
    // Not after the consumer's ack wait (30 s): the consumer starts at the checkpoint.
    expect(Date.now() - started).toBeLessThan(10_000);
    // The first start's consumer is removed (one is left).
    const manager = await jetstreamManager(nats.client());
    await waitUntil(async () => {
      let n = 0;
      for await (const c of manager.consumers.list(name)) n += c.name.startsWith('cdc-sync_sub_') ? 1 : 0;
      return n === 1;
    });
    await s.close();
  });

  it('goes on after what it handed on when its consumer is lost midway (a node down), not from the checkpoint again', async () => {
    const { name, publish } = await freshStream();
    await publish([1]);
    await publish([2]);
    const { source: s, reader } = await reading(name, 1);
    const chunks = [(await reader.next(10_000))!, (await reader.next(10_000))!];
    const manager = await jetstreamManager(nats.client());
    for await (const c of manager.consumers.list(name)) await manager.consumers.delete(name, c.name);
    await publish([3]);
    chunks.push((await reader.next(10_000))!);
    reader.stop();
    expect(chunks.map(ids)).toEqual([[1], [2], [3]]);
    const made = [];
    for await (const c of manager.consumers.list(name)) made.push(c);
    expect(made.map((c) => c.config.opt_start_seq)).toEqual([3]);
    await s.close();
  });

  it('says a read may still bring a missing parent while the publishing stream had more to read (it was copying, say)', async () => {
    const { name, publish } = await freshStream();
    await publish([1], 'public.items', true);
    await publish([2]);
    const { source: s, reader } = await reading(name, 1);
    const chunks = [(await reader.next(10_000))!, (await reader.next(10_000))!];
    reader.stop();
    expect(chunks.map((c) => c.readsPending)).toEqual([true, false]);
    await s.close();
  });

  it('says a read may still bring a missing parent while the last batch read is not whole yet (its publisher stopped midway)', async () => {
    const { name, publish } = await freshStream();
    // Two of a batch of three: the publisher was killed (or a node lost) before the third, which comes when it sends the batch again.
    await publish([1, 2], 'public.items', false, 3);
    const { source: s, reader } = await reading(name);
    const chunk = (await reader.next(10_000))!;
    reader.stop();
    expect(ids(chunk)).toEqual([1, 2]);
    expect(chunk.readsPending).toBe(true);
    await s.close();
  });

  it('acknowledges what the sink committed, so the consumer shows what is left', async () => {
    const { name, publish } = await freshStream();
    await publish([1, 2]);
    await publish([3]);
    const { source: s, context } = source(name, 2);
    await s.open(context);
    const chunk = await firstValueFrom(s.chunks(null, new Subject<void>()));
    expect(ids(chunk)).toEqual([1, 2]);
    await s.committed(chunk.position);
    const manager = await jetstreamManager(nats.client());
    const consumers = async () => {
      const all = [];
      for await (const c of manager.consumers.list(name)) all.push(c);
      return all;
    };
    const [current] = await consumers();
    expect(current!.name).toMatch(/^cdc-sync_sub_/);
    await waitUntil(async () => (await manager.consumers.info(name, current!.name)).ack_floor.stream_seq === 2);
    const info = await manager.consumers.info(name, current!.name);
    expect(info.num_pending + info.num_ack_pending).toBe(1);
    await s.close();
  });

  it('reads a JetStream stream from its start when the checkpoint counts in another one (deleted and created again)', async () => {
    const { name, publish } = await freshStream();
    await publish([1]);
    const { source: s, context } = source(name);
    await s.open(context);
    const chunk = await firstValueFrom(s.chunks(`${name}@1:40`, new Subject<void>()));
    expect(ids(chunk)).toEqual([1]);
    await s.close();
  });

  it('skips and counts changes of tables the stream does not take', async () => {
    const { name, publish } = await freshStream();
    await publish([1], 'public.other');
    await publish([2]);
    const { source: s, context } = source(name);
    await s.open(context);
    const demand = new Subject<void>();
    const chunks: SourceChunk[] = [];
    const subscription = s.chunks(null, demand).subscribe((c) => {
      chunks.push(c);
      demand.next();
    });
    await waitUntil(() => chunks.flatMap(ids).length > 0);
    subscription.unsubscribe();
    expect(chunks.flatMap(ids)).toEqual([2]);
    const suppressed = (await context.metrics.suppressed.get()).values.find((v) => v.labels.table === 'public.other' && v.labels.reason === 'unknown-table');
    expect(suppressed?.value).toBe(1);
    await s.close();
  });
});

async function waitUntil(condition: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 20));
  }
}
