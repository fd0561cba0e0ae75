import { ConfigError, PermanentError, errorMessage, isTransient } from '../../core/errors.js';
import { keyString } from '../../core/change-event.js';
import { parseQualifiedName } from '../../core/names.js';
import type { TableConfig, TableMapping, TargetTable } from '../../core/mapping.js';
import { connectJetStream, ensureStream, type JetStreamConnection, type NatsStreamSettings } from '../../db/nats/connection.js';
import { encodeChange, encodeTransaction, partitionOf, type EncodedChange } from '../../db/nats/envelope.js';
import { classifyNatsError } from '../../db/nats/errors.js';
import { AckedPublisher, type OutgoingMessage } from '../../db/nats/publisher.js';
import type { StreamContext } from '../../streams/context.js';
import type { ApplyResult, Sink, SinkBatch } from '../sink.js';

export interface NatsSinkOptions extends NatsStreamSettings {
  url: string;
  /** The source type, the envelope's `source.connector`. */
  connector: string;
  /** How long a publish waits for JetStream's acknowledgement. */
  timeoutMs: number;
  /** Publish BEGIN and END of each batch to the stream's transaction subject (Debezium's transaction metadata). */
  transactions?: boolean;
}

/**
 * Publishes each change of a batch to JetStream as a Debezium-shaped event
 * (db/nats/envelope.ts). A batch counts as applied only when JetStream
 * acknowledged every message of it (stored on a quorum of the stream's
 * replicas), so the stream's checkpoint never passes an unstored change. A
 * batch sent again after a failure or a crash carries the same message ids,
 * which JetStream drops within its duplicate window; later re-sends reach
 * consumers twice, which the sinks' idempotent apply makes harmless.
 *
 * Messages of one batch are sent without waiting for each other's
 * acknowledgement (one connection keeps them in order); a batch has at most
 * one change per key, and the next batch starts only after this one was
 * acknowledged, so each key's changes are stored in order.
 */
export class NatsSink implements Sink {
  readonly storesCheckpoints = false;
  readonly storesDeadLetters = false;
  readonly signalsSent = true;
  private nats: JetStreamConnection | undefined;
  private publisher: AckedPublisher | undefined;
  private context: StreamContext | undefined;
  /** Source table → the name it is published under (the `target:` of its entry). */
  private readonly names = new Map<string, string>();

  constructor(private readonly options: NatsSinkOptions) {}

  async open(context: StreamContext, tables: TableConfig[]): Promise<TargetTable[]> {
    this.context = context;
    this.nats ??= await connectJetStream(this.options.url, `cdc-sync ${context.stream}`);
    this.publisher ??= new AckedPublisher(this.nats);
    if (!context.checkOnly) await ensureStream(this.nats.manager, this.options);
    context.setConnected('sink', true);
    // A subject takes any row: every column passes through under its name (or its `columns:` rename).
    return tables.map((config) => {
      const name = parseQualifiedName(config.target || config.source);
      return { name, columns: [], primaryKey: config.key ?? [], uniqueKeys: [], open: true };
    });
  }

  bind(mappings: TableMapping[]): void {
    for (const m of mappings) this.names.set(m.source, m.target.name.schema ? `${m.target.name.schema}.${m.target.name.name}` : m.target.name.name);
  }

  readCheckpoint(): Promise<string | null> {
    return Promise.reject(new ConfigError('the nats sink keeps no checkpoints; use checkpoints.store "file" or "auto"'));
  }

  async apply(batch: SinkBatch): Promise<ApplyResult> {
    if (batch.checkpoint) throw new ConfigError('the nats sink keeps no checkpoints; use checkpoints.store "file" or "auto"');
    this.requireNats();
    const publisher = this.publisher!;
    const stream = this.context?.stream ?? '';
    const id = `${stream}:${batch.changes.at(-1)?.position ?? ''}`;
    const tableOrder = new Map<string, number>();
    const { partitions } = this.options;
    const partitionOfChange = partitions > 1 ? batch.changes.map((e) => partitionOf(e.key, partitions)) : [];
    const partitionSize = new Map<number, number>();
    for (const p of partitionOfChange) partitionSize.set(p, (partitionSize.get(p) ?? 0) + 1);
    const partitionOrder = new Map<number, number>();
    const messages: OutgoingMessage[] = [];
    for (const [i, event] of batch.changes.entries()) {
      const table = this.names.get(event.table) ?? event.table;
      const order = (tableOrder.get(table) ?? 0) + 1;
      tableOrder.set(table, order);
      let partition: { index: number; order: number; size: number } | undefined;
      if (partitions > 1) {
        const index = partitionOfChange[i]!;
        partitionOrder.set(index, (partitionOrder.get(index) ?? 0) + 1);
        partition = { index, order: partitionOrder.get(index)!, size: partitionSize.get(index)! };
      }
      let encoded;
      try {
        encoded = encodeChange(
          { ...event, table },
          { prefix: this.options.subjectPrefix, stream, connector: this.options.connector, batch: id, order: i + 1, size: batch.changes.length, tableOrder: order, ...(partition ? { partition } : {}), ...(batch.more ? { more: true } : {}) },
        );
      } catch (error) {
        throw new PermanentError(`cannot encode the change: ${errorMessage(error)}`, { context: { stream, table: event.table, key: keyString(event.key), position: event.position }, reason: 'invalid-data', cause: error });
      }
      messages.push(this.message(encoded));
    }
    // BEGIN and END around the batch's changes, on one connection and so in this order in the stream.
    const framed = this.options.transactions ?? false;
    if (framed) {
      messages.unshift(this.message(encodeTransaction(this.options.subjectPrefix, stream, id, 'BEGIN')));
      messages.push(this.message(encodeTransaction(this.options.subjectPrefix, stream, id, 'END', tableOrder)));
    }
    const sent = performance.now();
    const outcomes = publisher.publishAll(messages, this.options.timeoutMs);
    batch.onSent?.();
    const settled = await outcomes;
    if (this.context) this.context.metrics.publishAck.observe({ stream, direction: this.context.direction }, (performance.now() - sent) / 1000);
    let written = 0;
    let failure: unknown;
    for (const [m, outcome] of settled.entries()) {
      const i = framed ? m - 1 : m;
      const event = batch.changes[i];
      if ('ack' in outcome) {
        if (!outcome.ack.duplicate && event) written += 1;
        continue;
      }
      const classified = classifyNatsError(
        outcome.error,
        event ? { stream, table: event.table, key: keyString(event.key), position: event.position } : { stream, position: batch.changes.at(-1)?.position },
      );
      // A permanent failure names its change; a transient one fails the whole batch, which is sent again.
      if (failure === undefined || (isTransient(failure) && !classified.transient)) failure = classified;
    }
    if (failure !== undefined) {
      if (isTransient(failure)) this.context?.setConnected('sink', false);
      throw failure;
    }
    this.context?.setConnected('sink', true);
    this.context?.log.debug({ changes: batch.changes.length, written, more: batch.more ?? false, first: batch.changes[0]?.position, last: batch.changes.at(-1)?.position }, 'batch published');
    return { written };
  }

  private message(encoded: EncodedChange): OutgoingMessage {
    const headers = this.requireNats().headers();
    for (const [name, value] of Object.entries(encoded.headers)) headers.set(name, value);
    // JetStream refuses the message unless this stream stores it (another one taking the subject, say).
    headers.set('Nats-Expected-Stream', this.options.stream);
    return { subject: encoded.subject, data: encoded.data, headers };
  }

  async ping(): Promise<void> {
    try {
      await this.requireNats().connection.flush();
    } catch (error) {
      throw classifyNatsError(error, { stream: this.context?.stream, code: 'ping' });
    }
  }

  async close(): Promise<void> {
    const nats = this.nats;
    this.nats = undefined;
    this.publisher?.close();
    this.publisher = undefined;
    await nats?.connection.close();
  }

  private requireNats(): JetStreamConnection {
    if (!this.nats) throw new ConfigError('nats sink used before open()');
    return this.nats;
  }
}
