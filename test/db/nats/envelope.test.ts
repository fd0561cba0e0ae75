import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { JsonText } from '../../../src/core/json.js';
import { HEADERS, decodeChange, encodeChange, messageId, streamSubjects, subjectOf } from '../../../src/db/nats/envelope.js';

const CONTEXT = { prefix: 'cdc', stream: 'clinic-to-cloud', connector: 'mssql-cdc', batch: 'b1', order: 1, size: 1, tableOrder: 1 };
const headersOf = (h: Record<string, string>) => ({ get: (name: string) => h[name] ?? '' });

function change(overrides: Partial<ChangeEvent> = {}): ChangeEvent {
  return { table: 'public.patients', op: 'update', key: { id: 7 }, row: { id: 7, name: 'Ann' }, before: { id: 7, name: 'An' }, position: '0000002a:00000010:0003', commitTime: new Date('2026-01-02T03:04:05.678Z'), ...overrides };
}

describe('the Debezium-shaped envelope', () => {
  it('has Debezium’s value fields: before, after, source, op, ts_ms, transaction', () => {
    const encoded = encodeChange(change(), CONTEXT);
    const envelope = JSON.parse(encoded.data) as Record<string, unknown>;
    expect(Object.keys(envelope).sort()).toEqual(['after', 'before', 'op', 'source', 'transaction', 'ts_ms']);
    expect(envelope).toMatchObject({
      op: 'u',
      before: { id: 7, name: 'An' },
      after: { id: 7, name: 'Ann' },
      source: { connector: 'mssql-cdc', name: 'clinic-to-cloud', schema: 'public', table: 'patients', ts_ms: Date.parse('2026-01-02T03:04:05.678Z'), snapshot: 'false', position: '0000002a:00000010:0003' },
      transaction: { id: 'b1', total_order: 1, data_collection_order: 1 },
    });
    expect(encoded.subject).toBe('cdc.clinic-to-cloud.public.patients');
    expect(JSON.parse(encoded.headers[HEADERS.key]!)).toEqual({ id: 7 });
  });

  it('names inserts c, copied rows r, deletes d with the key as before-image when the source has none', () => {
    expect(JSON.parse(encodeChange(change({ op: 'insert', before: null }), CONTEXT).data).op).toBe('c');
    expect(JSON.parse(encodeChange(change({ op: 'insert', before: null, copied: true }), CONTEXT).data)).toMatchObject({ op: 'r', source: { snapshot: 'true' } });
    const deleted = JSON.parse(encodeChange(change({ op: 'delete', row: null, before: undefined }), CONTEXT).data);
    expect(deleted).toMatchObject({ op: 'd', after: null, before: { id: 7 } });
  });

  it('reads back bytes, instants, 64-bit integers and special numbers with their types', () => {
    const row = { id: 9007199254740993n, at: new Date('2021-01-01T00:00:00.123Z'), photo: new Uint8Array([0, 255, 16]), nan: Number.NaN, minus: -0, doc: { a: [1, 'x'] }, ['__proto__']: 'column' };
    const event = change({ op: 'insert', key: { id: 9007199254740993n }, row, before: null });
    const encoded = encodeChange(event, CONTEXT);
    const envelope = JSON.parse(encoded.data) as { after: Record<string, unknown> };
    // What a consumer that is not cdc-sync reads: base64, ISO 8601, decimal text.
    expect(envelope.after).toMatchObject({ id: '9007199254740993', at: '2021-01-01T00:00:00.123Z', photo: 'AP8Q', nan: 'NaN', minus: '-0' });
    const back = decodeChange(encoded.data, headersOf(encoded.headers), 'CDC@1:5');
    expect(back.key).toEqual({ id: 9007199254740993n });
    expect(back.row).toEqual(row);
    expect(Object.is(back.row!.minus, -0)).toBe(true);
    expect(Object.keys(back.row!)).toContain('__proto__');
    expect(back).toMatchObject({ table: 'public.patients', op: 'insert', position: 'CDC@1:5', commitTime: event.commitTime });
  });

  it('writes a json value (JsonText) as its own JSON text and reads it back as written, in both images', () => {
    const doc = new JsonText('{ "n" : 2.50, "big": 123456789012345678901234567890, "s": "1.0" }');
    const event = change({ row: { id: 7, doc, text: '"1.0"' }, before: { id: 7, doc: new JsonText('[1.0]'), text: 'x' } });
    const encoded = encodeChange(event, CONTEXT);
    expect(encoded.data).toContain('"doc":{ "n" : 2.50, "big": 123456789012345678901234567890, "s": "1.0" }');
    // What another consumer reads: the JSON value itself.
    expect((JSON.parse(encoded.data) as { after: { doc: unknown } }).after.doc).toEqual({ n: 2.5, big: 1.2345678901234568e29, s: '1.0' });
    const back = decodeChange(encoded.data, headersOf(encoded.headers), 'CDC@1:6');
    expect(back.row).toEqual({ id: 7, doc, text: '"1.0"' });
    expect(back.before).toEqual({ id: 7, doc: new JsonText('[1.0]'), text: 'x' });
  });

  it('reads an event another Debezium producer wrote (no cdc-sync headers) with its values as JSON gave them', () => {
    const data = JSON.stringify({ before: null, after: { id: 1, at: '2021-01-01T00:00:00Z' }, source: { schema: 'inventory', table: 'orders', ts_ms: 1000 }, op: 'c', ts_ms: 2000, transaction: null });
    const event = decodeChange(data, headersOf({}), 'S@1:1');
    expect(event).toMatchObject({ table: 'inventory.orders', op: 'insert', row: { id: 1, at: '2021-01-01T00:00:00Z' }, commitTime: new Date(1000) });
    expect(() => decodeChange(JSON.stringify({ source: {}, op: 'x' }), headersOf({}), 'S@1:2')).toThrow(/unknown op/);
    expect(() => decodeChange('[1]', headersOf({}), 'S@1:3')).toThrow(/not a change event/);
  });

  it('gives a change re-sent after a crash the same message id, and any other change another one', () => {
    const first = messageId('s', change());
    expect(messageId('s', change())).toBe(first);
    expect(messageId('s', change({ position: 'other' }))).not.toBe(first);
    expect(messageId('t', change())).not.toBe(first);
    expect(messageId('s', change({ op: 'delete', row: null }))).not.toBe(first);
    expect(messageId('s', change({ key: { id: 8 } }))).not.toBe(first);
  });

  it('keeps subjects to NATS tokens: dots, spaces and wildcards of names become _', () => {
    expect(subjectOf('cdc', 'a.b', 'dbo.tbl Patients*')).toBe('cdc.a_b.dbo.tbl_Patients_');
    expect(subjectOf('cdc', 's', 'items')).toBe('cdc.s._.items');
    expect(streamSubjects('cdc', 'a.b')).toBe('cdc.a_b.>');
  });
});
