// The private NATS JetStream cluster (nats-server.ts) started once for a test file, with a client.
import { afterAll, beforeAll } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { startNatsCluster, type NatsCluster } from './nats-server.js';

export { startNatsCluster, type NatsCluster } from './nats-server.js';

/**
 * A cluster of `size` nodes and a client for the tests of one file: started
 * before them, stopped after.
 */
export function natsForTests(size = 1): { cluster: () => NatsCluster; client: () => NatsConnection } {
  let cluster: NatsCluster | undefined;
  let client: NatsConnection | undefined;
  beforeAll(async () => {
    cluster = await startNatsCluster(size);
    const { connect } = await import('@nats-io/transport-node');
    client = await connect({ servers: cluster.url.split(',') });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  });
  return { cluster: () => cluster!, client: () => client! };
}
