import { createHash } from 'node:crypto';
import { keyString, type ChangeEvent, type Row, type Value } from '../../core/change-event.js';
import { JsonText, jsonMembers, keepJsonTexts, parseJson, toJsonText } from '../../core/json.js';

/**
 * A change as the JSON value of a Debezium change event (the envelope with
 * schemas disabled: `before`, `after`, `source`, `op`, `ts_ms`,
 * `transaction`; https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-change-events-value),
 * so a consumer written for Debezium reads it unchanged. `op`: c(reate),
 * u(pdate), d(elete), r(ead: a snapshot row), t(runcate).
 */
export interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: {
    version: string;
    connector: string;
    /** The cdc-sync stream that published it. */
    name: string;
    /** Commit (or capture) time of the change at the source. */
    ts_ms: number;
    snapshot: 'true' | 'false';
    db: string;
    schema: string;
    table: string;
    /** The source's own position of the change (opaque, ordered per stream). */
    position: string;
    /** Who wrote the change at the source, when the source could tell. */
    origin?: string;
  };
  op: 'c' | 'u' | 'd' | 'r' | 't';
  ts_ms: number;
  /** Debezium's transaction block; here one published batch (whole source transactions). */
  transaction: { id: string; total_order: number; data_collection_order: number } | null;
}

/**
 * Headers beside the envelope. `Nats-Msg-Id` lets JetStream drop a re-sent
 * change within its duplicate window
 * (https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#message-deduplication).
 * JSON has no bytes, instants or 64-bit integers: `Cdc-Sync-Types` names the
 * columns whose JSON string stands for one, so cdc-sync reads back the value
 * it published; other consumers read base64, ISO 8601 and decimal text. It
 * also names the json columns (`json`), written as their own JSON text,
 * which cdc-sync reads back as written.
 */
export const HEADERS = { msgId: 'Nats-Msg-Id', key: 'Cdc-Sync-Key', types: 'Cdc-Sync-Types', batch: 'Cdc-Sync-Batch', more: 'Cdc-Sync-More' } as const;

type Tag = 'date' | 'bytes' | 'bigint' | 'number' | 'json';

export interface EncodedChange {
  subject: string;
  data: string;
  headers: Record<string, string>;
}

const OPS = { insert: 'c', update: 'u', delete: 'd', truncate: 't' } as const;

/**
 * `<prefix>.<stream>.<schema>.<table>`: one subject per table, so a consumer
 * subscribes to a table, a stream or everything with NATS wildcards; with
 * partitions, the key's partition is a last token. Characters NATS gives a
 * meaning in subjects become `_`.
 */
export function subjectOf(prefix: string, stream: string, table: string, partition?: number): string {
  const [schema, name] = table.includes('.') ? [table.slice(0, table.indexOf('.')), table.slice(table.indexOf('.') + 1)] : ['', table];
  return `${prefix}.${token(stream)}.${token(schema)}.${token(name)}${partition === undefined ? '' : `.${partition}`}`;
}

/**
 * Where a stream's transaction events go (`nats.transactions`): the stream's
 * own subject, two tokens, so no consumer of its change subjects
 * (`<prefix>.<stream>.>`) receives them.
 */
export function transactionSubject(prefix: string, stream: string): string {
  return `${prefix}.${token(stream)}`;
}

/**
 * Debezium's transaction metadata event
 * (https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-transaction-metadata):
 * BEGIN before a published batch, END after it with the count of its events
 * and of each table's. The transaction is the published batch, as in the
 * change events' `transaction` block; the message id makes a re-sent batch's
 * events duplicates JetStream drops.
 */
export function encodeTransaction(
  prefix: string,
  stream: string,
  id: string,
  status: 'BEGIN' | 'END',
  counts?: Map<string, number>,
): EncodedChange {
  const total = counts ? [...counts.values()].reduce((a, b) => a + b, 0) : null;
  const event = {
    status,
    id,
    ts_ms: Date.now(),
    event_count: total,
    data_collections: counts ? [...counts].map(([table, n]) => ({ data_collection: table, event_count: n })) : null,
  };
  const msgId = createHash('sha256').update(`${stream}\u0000${id}\u0000${status}`).digest('base64url').slice(0, 32);
  return { subject: transactionSubject(prefix, stream), data: JSON.stringify(event), headers: { [HEADERS.msgId]: msgId } };
}

/** Every subject a cdc-sync stream publishes to, or those of one partition. */
export function streamSubjects(prefix: string, stream: string, partition?: number): string {
  return partition === undefined ? `${prefix}.${token(stream)}.>` : `${prefix}.${token(stream)}.*.*.${partition}`;
}

/**
 * The partition of a key: FNV-1a (32 bits) of its text, modulo the count. A
 * key always lands in the same partition, so one consumer applies all its
 * changes, in order.
 */
export function partitionOf(key: Row, partitions: number): number {
  const text = keyString(key);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

function token(text: string): string {
  return text.replace(/[\s.*>]/g, '_') || '_';
}

export function encodeChange(
  event: ChangeEvent,
  context: {
    prefix: string;
    stream: string;
    connector: string;
    batch: string;
    /** Place in the batch (from 1) and the batch's size. */
    order: number;
    size: number;
    tableOrder: number;
    /** With partitions: the change's partition, and its place among the batch's changes of that partition. */
    partition?: { index: number; order: number; size: number };
    /** The publishing stream's source had more to read after this batch (SinkBatch.more). */
    more?: boolean;
  },
): EncodedChange {
  const types: Record<string, Tag> = {};
  const after = event.row ? plainRow(event.row, types) : null;
  const before = event.op === 'delete' ? plainRow(event.before ?? event.key, types) : event.before ? plainRow(event.before, types) : null;
  const key = plainRow(event.key, types);
  const dot = event.table.indexOf('.');
  const envelope: Envelope = {
    before,
    after,
    source: {
      version: 'cdc-sync',
      connector: context.connector,
      name: context.stream,
      ts_ms: event.commitTime.getTime(),
      snapshot: event.copied ? 'true' : 'false',
      db: '',
      schema: dot < 0 ? '' : event.table.slice(0, dot),
      table: dot < 0 ? event.table : event.table.slice(dot + 1),
      position: event.position,
      ...(event.origin ? { origin: event.origin } : {}),
    },
    op: event.copied ? 'r' : OPS[event.op],
    ts_ms: Date.now(),
    transaction: { id: context.batch, total_order: context.order, data_collection_order: context.tableOrder },
  };
  const headers: Record<string, string> = {
    [HEADERS.msgId]: messageId(context.stream, event),
    [HEADERS.key]: JSON.stringify(key),
    // A reader of one partition sees only its share of the batch: the count is of that share.
    [HEADERS.batch]: context.partition ? `${context.partition.order}/${context.partition.size}` : `${context.order}/${context.size}`,
  };
  if (Object.keys(types).length > 0) headers[HEADERS.types] = JSON.stringify(types);
  // Upstream was copying or behind: a change of this batch whose parent is missing waits for it downstream.
  if (context.more) headers[HEADERS.more] = '1';
  // toJsonText: a json column's value (JsonText) goes as its own text.
  return { subject: subjectOf(context.prefix, context.stream, event.table, context.partition?.index), data: toJsonText(envelope), headers };
}

/**
 * The same change re-sent after a crash gets the same id: the stream, the
 * source position, the table, the key and the operation name it.
 */
export function messageId(stream: string, event: ChangeEvent): string {
  const text = `${stream}\u0000${event.position}\u0000${event.table}\u0000${keyString(event.key)}\u0000${event.op}\u0000${event.copied ? 'r' : ''}`;
  return createHash('sha256').update(text).digest('base64url').slice(0, 32);
}

/** A published change back as a ChangeEvent (table `schema.table` as published, position the JetStream sequence). */
export function decodeChange(data: string, headers: { get(name: string): string }, position: string): ChangeEvent {
  const envelope = parseJson(data) as unknown as Envelope;
  if (!envelope || typeof envelope !== 'object' || !envelope.source || typeof envelope.op !== 'string') throw new Error('not a change event envelope');
  const typesText = headers.get(HEADERS.types);
  const types = typesText ? (JSON.parse(typesText) as Record<string, Tag>) : {};
  const keyText = headers.get(HEADERS.key);
  const table = envelope.source.schema ? `${envelope.source.schema}.${envelope.source.table}` : envelope.source.table;
  const after = envelope.after ? typedRow(envelope.after, types) : null;
  const before = envelope.before ? typedRow(envelope.before, types) : null;
  rawJsonColumns(data, types, { after, before });
  const op = ({ c: 'insert', r: 'insert', u: 'update', d: 'delete', t: 'truncate' } as const)[envelope.op];
  if (!op) throw new Error(`unknown op "${envelope.op}"`);
  const key = keyText ? typedRow(parseJson(keyText) as Record<string, unknown>, types) : {};
  const event: ChangeEvent = { table, op, key, row: op === 'delete' || op === 'truncate' ? null : after, before, position, commitTime: new Date(envelope.source.ts_ms) };
  if (envelope.op === 'r') event.copied = true;
  if (envelope.source.origin) event.origin = envelope.source.origin;
  return event;
}

function plainRow(row: Row, types: Record<string, Tag>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) {
    const [plain, tag] = plainValue(value);
    if (tag) types[column] = tag;
    Object.defineProperty(out, column, { value: plain, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function plainValue(value: Value): [unknown, Tag | undefined] {
  if (value instanceof Date) return [value.toISOString(), 'date'];
  if (value instanceof Uint8Array) return [Buffer.from(value).toString('base64'), 'bytes'];
  if (typeof value === 'bigint') return [value.toString(), 'bigint'];
  if (typeof value === 'number' && (!Number.isFinite(value) || Object.is(value, -0))) return [Object.is(value, -0) ? '-0' : String(value), 'number'];
  // Written as its own JSON text (toJsonText); read back from it (rawJsonColumns).
  if (value instanceof JsonText) return [value, 'json'];
  return [value, undefined];
}

function typedRow(row: Record<string, unknown>, types: Record<string, Tag>): Row {
  const out: Row = {};
  for (const [column, value] of Object.entries(row)) {
    const tag = Object.hasOwn(types, column) ? types[column] : undefined;
    Object.defineProperty(out, column, { value: tag && typeof value === 'string' ? typedValue(value, tag) : (value as Value), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** The json columns' values as the message wrote them (JsonText): parsed, they would lose what the json value held exactly. */
function rawJsonColumns(data: string, types: Record<string, Tag>, images: { after: Row | null; before: Row | null }): void {
  const json = new Set(Object.keys(types).filter((column) => types[column] === 'json'));
  if (json.size === 0) return;
  const texts = jsonMembers(data, new Set(['after', 'before']));
  for (const side of ['after', 'before'] as const) {
    const image = images[side];
    const text = texts.get(side);
    if (!image || text === undefined) continue;
    keepJsonTexts(image, text, json);
  }
}

function typedValue(text: string, tag: Tag): Value {
  switch (tag) {
    case 'date':
      return new Date(text);
    case 'bytes':
      return new Uint8Array(Buffer.from(text, 'base64'));
    case 'bigint':
      return BigInt(text);
    case 'number':
      return text === '-0' ? -0 : Number(text);
    case 'json':
      // A JSON string; rawJsonColumns puts the value's own text in its place.
      return text;
  }
}
