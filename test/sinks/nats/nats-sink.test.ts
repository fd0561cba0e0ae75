import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { ConfigError, PermanentError, TransientError } from '../../../src/core/errors.js';
import type { TableMapping } from '../../../src/core/mapping.js';
import { NatsSink } from '../../../src/sinks/nats/nats-sink.js';
import { natsForTests } from '../../support/nats-cluster.js';
import { testContext } from '../../support/stream-context.js';

/** The nats sink against a real (one-node) JetStream server. */
const nats = natsForTests(1);

async function openSink(stream: string, prefix = stream.toLowerCase(), timeoutMs = 5000, transactions = false): Promise<NatsSink> {
  const sink = new NatsSink({ url: nats.cluster().url, stream, subjectPrefix: prefix, replicas: 1, duplicateWindowSeconds: 120, partitions: 1, connector: 'postgres-changelog', timeoutMs, transactions });
  const tables = await sink.open(testContext('pub'), [{ source: 'public.items', target: '' }]);
  sink.bind([{ source: 'public.items', target: tables[0]! } as unknown as TableMapping]);
  return sink;
}

const change = (id: number, position: string, name = `n${id}`): ChangeEvent => ({ table: 'public.items', op: 'insert', key: { id }, row: { id, name }, position, commitTime: new Date() });

describe('nats sink', () => {
  it('creates its JetStream stream and stores a batch sent again once (message ids within the duplicate window)', async () => {
    const sink = await openSink('ONCE');
    const batch = { changes: [change(1, '10'), change(2, '11')], deadLetters: [] };
    expect(await sink.apply(batch)).toEqual({ written: 2 });
    // After a crash the same changes come again (same stream, positions, keys): JetStream drops them.
    expect(await sink.apply(batch)).toEqual({ written: 0 });
    expect(await sink.apply({ changes: [change(2, '12', 'later')], deadLetters: [] })).toEqual({ written: 1 });
    const info = await (await jetstreamManager(nats.client())).streams.info('ONCE');
    expect(info.state.messages).toBe(3);
    expect(info.config.subjects).toEqual(['once.>']);
    expect(info.config.duplicate_window).toBe(120 * 1e9);
    await sink.close();
  });

  it('with nats.transactions, frames each batch with Debezium transaction events on the stream subject: BEGIN, the changes, END with the counts per table; a batch sent again adds none', async () => {
    const sink = await openSink('TX', 'tx', 5000, true);
    const other = { ...change(3, '12'), table: 'public.orders' };
    const batch = { changes: [change(1, '10'), change(2, '11'), other], deadLetters: [] };
    expect(await sink.apply(batch)).toEqual({ written: 3 });
    expect(await sink.apply(batch)).toEqual({ written: 0 });
    const consumer = await jetstream(nats.client()).consumers.get('TX');
    const stored: { subject: string; body: Record<string, unknown> }[] = [];
    expect((await (await jetstreamManager(nats.client())).streams.info('TX')).state.messages).toBe(5);
    for await (const m of await consumer.fetch({ max_messages: 5, expires: 1000 })) stored.push({ subject: m.subject, body: m.json() });
    expect(stored.map((m) => m.subject)).toEqual(['tx.pub', 'tx.pub.public.items', 'tx.pub.public.items', 'tx.pub.public.orders', 'tx.pub']);
    const [begin, , , , end] = stored.map((m) => m.body);
    const id = (stored[1]!.body.transaction as { id: string }).id;
    expect(begin).toMatchObject({ status: 'BEGIN', id, event_count: null, data_collections: null });
    expect(end).toMatchObject({
      status: 'END',
      id,
      event_count: 3,
      data_collections: [
        { data_collection: 'public.items', event_count: 2 },
        { data_collection: 'public.orders', event_count: 1 },
      ],
    });
    await sink.close();
  });

  it('times each publish from sending the batch to its last acknowledgement (cdc_sync_publish_ack_seconds)', async () => {
    const sink = new NatsSink({ url: nats.cluster().url, stream: 'TIMED', subjectPrefix: 'timed', replicas: 1, duplicateWindowSeconds: 120, partitions: 1, connector: 'postgres-changelog', timeoutMs: 5000 });
    const context = testContext('pub');
    const tables = await sink.open(context, [{ source: 'public.items', target: '' }]);
    sink.bind([{ source: 'public.items', target: tables[0]! } as unknown as TableMapping]);
    await sink.apply({ changes: [change(1, '1'), change(2, '2')], deadLetters: [] });
    await sink.apply({ changes: [change(3, '3')], deadLetters: [] });
    const series = (await context.metrics.publishAck.get()).values;
    const count = series.find((v) => v.metricName === 'cdc_sync_publish_ack_seconds_count' && v.labels.stream === 'pub');
    const total = series.find((v) => v.metricName === 'cdc_sync_publish_ack_seconds_sum' && v.labels.stream === 'pub');
    expect(count?.value).toBe(2);
    expect(total!.value).toBeGreaterThan(0);
    expect(total!.value).toBeLessThan(5);
    await sink.close();
  });

  it('marks the changes of a batch after which its source had more to read, so the applying stream holds a child for its parent', async () => {
    const sink = await openSink('MORE');
    await sink.apply({ changes: [change(1, '1')], deadLetters: [], more: true });
    await sink.apply({ changes: [change(2, '2')], deadLetters: [] });
    const consumer = await jetstream(nats.client()).consumers.get('MORE');
    const marks = [];
    for await (const m of await consumer.fetch({ max_messages: 2, expires: 1000 })) marks.push(m.headers?.get('Cdc-Sync-More') ?? '');
    expect(marks).toEqual(['1', '']);
    await sink.close();
  });

  it('sends a change larger than the server takes to the dead letter, not the stream round a retry loop', async () => {
    const sink = await openSink('BIG');
    const error = await sink.apply({ changes: [change(1, '1', 'x'.repeat(2 * 1024 * 1024))], deadLetters: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).reason).toBe('invalid-data');
    await sink.close();
  });

  it('refuses a JetStream stream that does not take its subjects, and a prefix another stream holds', async () => {
    await (await jetstreamManager(nats.client())).streams.add({ name: 'ELSEWHERE', subjects: ['orders.>'] });
    await expect(openSink('ELSEWHERE', 'cdc')).rejects.toThrow(ConfigError);
    await expect(openSink('ELSEWHERE', 'cdc')).rejects.toThrow(/takes orders\.>, not cdc\.>/);
    await expect(openSink('OTHER', 'orders')).rejects.toThrow(/overlaps the subjects of another JetStream stream/);
  });

  it('fails a batch as transient when no JetStream stream takes it (the server answers 503, no responders)', async () => {
    const sink = await openSink('GONE');
    await (await jetstreamManager(nats.client())).streams.delete('GONE');
    const error = await sink.apply({ changes: [change(1, '1')], deadLetters: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransientError);
    expect((error as Error).message).toMatch(/no responders/);
    await sink.close();
  });

  // Last: it stops the file's server.
  it('fails a batch as transient when JetStream does not acknowledge in time, and stores it once when sent again', async () => {
    const sink = await openSink('LATE', 'late', 1000);
    const batch = { changes: [change(1, '1'), change(2, '2')], deadLetters: [] };
    await nats.cluster().stopNode(0);
    const error = await sink.apply(batch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransientError);
    expect((error as Error).message).toMatch(/did not acknowledge within 1000 ms/);
    await nats.cluster().startNode(0);
    // The client sends what it buffered once it is back; the retried batch then duplicates it, or stores it.
    for (let i = 0; ; i += 1) {
      const applied = await sink.apply(batch).catch((e: unknown) => e);
      if (!(applied instanceof Error)) break;
      if (i > 50) throw applied;
      await new Promise((r) => setTimeout(r, 200));
    }
    // The test's own client reconnects on its own schedule (reconnectTimeWait, with jitter): its first requests may time out.
    let stored: number | undefined;
    for (let i = 0; stored === undefined; i += 1) {
      stored = await jetstreamManager(nats.client())
        .then((jsm) => jsm.streams.info('LATE'))
        .then((info) => info.state.messages)
        .catch((error: unknown) => {
          if (i > 10) throw error;
          return undefined;
        });
    }
    expect(stored).toBe(2);
    await sink.close();
  }, 90_000);
});
