import type { Row } from '../../core/change-event.js';
import { RowText, textRow, type RowTextShape } from '../../core/row-text.js';
import type { LogicalType } from '../../core/values.js';
import type { RelationColumn } from './wal-protocol.js';
import { fromText } from './wal-values.js';

/**
 * Built-in type OIDs (pg_type, fixed in every PostgreSQL) and the logical
 * type a column must have for `convertValue` to leave `fromText`'s value of
 * them as it is: numbers, booleans and JsonText pass through their own type,
 * text through every other. Other OIDs (arrays, enums, domains, extension
 * types) name no type: their rows are decoded before they are mapped.
 */
const TEXT_TYPES: ReadonlyMap<number, LogicalType> = new Map<number, LogicalType>([
  [16, 'boolean'], // bool
  [17, 'binary'], // bytea
  [19, 'text'], // name
  [20, 'integer'], // int8
  [21, 'integer'], // int2
  [23, 'integer'], // int4
  [25, 'text'], // text
  [26, 'integer'], // oid
  [114, 'json'], // json
  [700, 'float'], // float4
  [701, 'float'], // float8
  [1042, 'text'], // bpchar
  [1043, 'text'], // varchar
  [1082, 'date'], // date
  [1083, 'time'], // time
  [1114, 'timestamp'], // timestamp
  [1184, 'timestamptz'], // timestamptz
  [1266, 'time'], // timetz
  [1700, 'decimal'], // numeric
  [2950, 'uuid'], // uuid
  [3802, 'json'], // jsonb
]);

/** Bytes of a buffer the lines are written into: a transaction's inserts share a few. */
const CHUNK = 256 * 1024;

/** Node.js Buffers have utf8Slice (what toString('utf8') calls); it is not in @types/node. */
type Utf8Slicing = Buffer & { utf8Slice(start: number, end: number): string };

/**
 * Where inserts' COPY lines are written: buffers outside V8's heap, each
 * line in one, a new buffer when a line does not fit. A buffer lives as long
 * as a row written into it; none is written again.
 */
export class CopyLines {
  bytes: Buffer = Buffer.alloc(0);
  at = 0;

  /** Room for `size` bytes at `at` of `bytes`. */
  reserve(size: number): void {
    if (this.bytes.length - this.at >= size) return;
    this.bytes = Buffer.allocUnsafeSlow(Math.max(CHUNK, size));
    this.at = 0;
  }
}

/** What the rows of one relation (one Relation message) share: their columns, and how a line of them reads. */
export class TupleShape implements RowTextShape {
  readonly columns: string[];
  readonly types: (LogicalType | undefined)[];
  private readonly oids: number[];
  /** Every column, null: a decoded row starts as a copy of it (one object shape for all rows of the relation). */
  private readonly template: Row;
  /** Per column, the index of the key column it is, or -1. */
  private readonly keyOf: Int32Array;
  /** Every key column, null. */
  private readonly keyTemplate: Row;
  /** The key of the row `newTuple` returned last. */
  key: Row = {};

  constructor(
    columns: readonly RelationColumn[],
    private readonly keyColumns: string[],
  ) {
    this.columns = columns.map((c) => c.name);
    this.types = columns.map((c) => TEXT_TYPES.get(c.typeOid));
    this.oids = columns.map((c) => c.typeOid);
    this.template = Object.fromEntries(this.columns.map((name) => [name, null]));
    this.keyOf = Int32Array.from(this.columns, (name) => keyColumns.indexOf(name));
    this.keyTemplate = Object.fromEntries(keyColumns.map((name) => [name, null]));
  }

  /**
   * The new tuple of an Insert, or of an Update that carries no old tuple
   * (its key did not change), written to `lines` as a COPY line, and the row
   * as text over it; its key, read as `decode` would read it, in `key`.
   * Undefined when the message is neither, or its tuple lacks one plain value
   * or null per column (an unchanged TOAST value).
   */
  newTuple(message: Buffer, offset: number, lines: CopyLines): Row | undefined {
    const count = this.columns.length;
    // 'I' or 'U', relation id, 'N', column count, then per column 'n', or 't', a 32-bit length and the text. An
    // Update with an old tuple has 'K' or 'O' where the 'N' is (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
    const tag = message[offset];
    if ((tag !== 0x49 && tag !== 0x55) || message[offset + 5] !== 0x4e || message.readInt16BE(offset + 6) !== count) return undefined;
    // A copy of the template is an object of exactly the key's size; one built up from {} has room for four columns.
    const key: Row = { ...this.keyTemplate };
    let at = offset + 8;
    for (let i = 0; i < count; i += 1) {
      const kind = message[at];
      if (kind === 0x6e /* n */) {
        at += 1;
        continue;
      }
      if (kind !== 0x74 /* t */) return undefined;
      const length = message.readInt32BE(at + 1);
      const k = this.keyOf[i]!;
      if (k !== -1) key[this.keyColumns[k]!] = fromText(this.oids[i]!, (message as Utf8Slicing).utf8Slice(at + 5, at + 5 + length));
      at += 5 + length;
    }
    // Each byte of a value at most doubled by its escape, a NULL's two bytes, the tabs and the newline.
    lines.reserve(2 * (at - offset) + count);
    const out = lines.bytes;
    const start = lines.at;
    let o = start;
    at = offset + 8;
    for (let i = 0; i < count; i += 1) {
      if (i > 0) out[o++] = 0x09;
      if (message[at] === 0x6e) {
        out[o++] = 0x5c; // \N
        out[o++] = 0x4e;
        at += 1;
        continue;
      }
      const end = at + 5 + message.readInt32BE(at + 1);
      for (let b = at + 5; b < end; b += 1) {
        const byte = message[b]!;
        if (byte === 0x5c || byte === 0x0a || byte === 0x0d || byte === 0x09) {
          out[o++] = 0x5c;
          out[o++] = byte === 0x5c ? 0x5c : byte === 0x0a ? 0x6e : byte === 0x0d ? 0x72 : 0x74;
        } else out[o++] = byte;
      }
      at = end;
    }
    out[o++] = 0x0a;
    lines.at = o;
    this.key = key;
    return textRow(new RowText(this, out, start, o));
  }

  /** A line `newTuple` wrote, read into values as the source reads a tuple (fromText). */
  decode(bytes: Buffer, start: number, end: number): Row {
    const row: Row = { ...this.template };
    let at = start;
    for (let i = 0; i < this.columns.length; i += 1) {
      let stop = at;
      let escaped = false;
      for (; stop < end && bytes[stop] !== 0x09 && bytes[stop] !== 0x0a; stop += 1) {
        if (bytes[stop] === 0x5c) {
          escaped = true;
          stop += 1;
        }
      }
      if (stop - at === 2 && bytes[at] === 0x5c && bytes[at + 1] === 0x4e) {
        at = stop + 1; // \N: NULL, as the template has it
        continue;
      }
      const text = escaped ? unescaped(bytes, at, stop) : (bytes as Utf8Slicing).utf8Slice(at, stop);
      row[this.columns[i]!] = fromText(this.oids[i]!, text);
      at = stop + 1;
    }
    return row;
  }
}

/** A COPY text field with its escapes (the four `newTuple` writes) undone, as UTF-8 text. */
function unescaped(bytes: Buffer, start: number, end: number): string {
  const out = Buffer.allocUnsafe(end - start);
  let o = 0;
  for (let at = start; at < end; at += 1) {
    const byte = bytes[at]!;
    if (byte !== 0x5c) {
      out[o++] = byte;
      continue;
    }
    const next = bytes[++at]!;
    out[o++] = next === 0x6e ? 0x0a : next === 0x72 ? 0x0d : next === 0x74 ? 0x09 : next;
  }
  return out.toString('utf8', 0, o);
}
