import { headers } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { NatsSource } from '../../../src/cdc/nats/nats-source.js';
import { encodeChange } from '../../../src/db/nats/envelope.js';
import { natsForTests } from '../../support/nats-cluster.js';
import { stepper } from '../../support/pull.js';
import { testContext } from '../../support/stream-context.js';

/** The nats source on a three-node cluster, its consumer's node killed while it stays connected to another one. */
const nats = natsForTests(3);

async function publish(id: number): Promise<void> {
  const encoded = encodeChange(
    { table: 'public.items', op: 'insert', key: { id }, row: { id }, position: String(id), commitTime: new Date() },
    { prefix: 'lost', stream: 'pub', connector: 'test', batch: `b${id}`, order: 1, size: 1, tableOrder: 1 },
  );
  const h = headers();
  for (const [k, v] of Object.entries(encoded.headers)) h.set(k, v);
  // Again while the stream elects a leader (new, or after a node came back) (the same message id: stored once).
  for (let attempt = 0; ; attempt += 1) {
    try {
      await jetstream(nats.client()).publish(encoded.subject, encoded.data, { headers: h, msgID: encoded.headers['Nats-Msg-Id'], timeout: 5_000 });
      return;
    } catch (error) {
      if (attempt >= 40) throw error;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function sourceOn(url: string): NatsSource {
  return new NatsSource({
    url,
    stream: 'LOST',
    subjectPrefix: 'lost',
    replicas: 3,
    duplicateWindowSeconds: 120,
    partitions: 1,
    tables: [{ source: 'public.items', target: '' }],
    from: 'pub',
    consumer: 'cdc-sync_sub',
    readLimit: 100,
    idleIntervalMs: 200,
    retry: { attempts: 20, minDelayMs: 50, maxDelayMs: 500 },
    timeoutMs: 5000,
  });
}

describe('nats source, a node lost', () => {
  it('delivers again within seconds when the node holding its consumer is killed and comes back (its pull went with it)', async () => {
    const manager = await jetstreamManager(nats.client());
    await manager.streams.add({ name: 'LOST', subjects: ['lost.>'], num_replicas: 3 });
    await publish(1);
    const nodes = nats.cluster().nodes;
    // The consumer (one replica) lands on a node the server picks: connect to another one, so the
    // client stays connected while that node is down (a reconnect would make it pull again by itself).
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const connectedTo = attempt % nodes.length;
      const source = sourceOn(nodes[connectedTo]!.url);
      await source.open(testContext('sub'));
      const reader = stepper(source, null);
      const first = await reader.next(15_000);
      expect(first?.events.map((e) => e.key.id)).toEqual([1]);
      let leader: string | undefined;
      for await (const c of manager.consumers.list('LOST')) if (c.name.startsWith('cdc-sync_sub_')) leader = c.cluster?.leader;
      const holding = nodes.findIndex((n) => n.name === leader);
      if (holding < 0 || holding === connectedTo) {
        reader.stop();
        await source.close();
        continue;
      }
      await nats.cluster().stopNode(holding, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      await nats.cluster().startNode(holding);
      await publish(2);
      // With the client's default pull (30 s, heartbeats every 15 s) nothing came for 30 s and more: null here.
      const second = await reader.next(20_000);
      reader.stop();
      await source.close();
      expect(second?.events.map((e) => e.key.id)).toEqual([2]);
      return;
    }
    throw new Error('the consumer always landed on the node the source was connected to');
  }, 120_000);
});
