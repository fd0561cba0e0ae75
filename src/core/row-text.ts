import type { Row } from './change-event.js';
import type { LogicalType } from './values.js';

/** What the text rows of one source table share: their columns, and how a line of them reads. */
export interface RowTextShape {
  /** Column names in the line's order: the row's own keys, in order. */
  readonly columns: readonly string[];
  /**
   * Per column, the logical type whose values the text reads as unchanged
   * (`convertValue` of the decoded value for a column of this type gives the
   * value back); undefined where no type does.
   */
  readonly types: readonly (LogicalType | undefined)[];
  /** The line `bytes[start, end)` read into JavaScript values, as the source reads a row it decodes at once. */
  decode(bytes: Buffer, start: number, end: number): Row;
}

/**
 * A row still in its source's text form: one line of PostgreSQL's COPY text
 * format (https://www.postgresql.org/docs/current/sql-copy.html, "Text
 * Format": each value's text output, tab-separated, `\N` for NULL, four
 * characters escaped, a newline at the end), not yet read into JavaScript
 * values.
 *
 * The postgres-wal source hands inserts on this way to a PostgreSQL sink,
 * because most of a backlog is inserts that the sink writes with COPY, whose
 * data is exactly those lines: reading each value into a string and writing
 * it out again was most of the process's work per insert, and the strings
 * were most of what its garbage collector copied (BENCHMARKS.md,
 * postgres-wal). The line lives outside V8's heap, in the source's buffers.
 *
 * Such a row is an ordinary `Row` to every other reader: the first look at a
 * value, a key or a property decodes the whole row once (`decode`), as the
 * source would have, and the row answers from that from then on.
 */
export class RowText {
  /** The decoded row, once something read it. */
  row: Row | undefined = undefined;

  constructor(
    readonly shape: RowTextShape,
    /** The line is bytes[start, end), its newline included. */
    readonly bytes: Buffer,
    readonly start: number,
    readonly end: number,
  ) {}

  get columns(): readonly string[] {
    return this.shape.columns;
  }
}

const TEXT = Symbol('cdc-sync.rowText');

function decoded(text: RowText): Row {
  return (text.row ??= text.shape.decode(text.bytes, text.start, text.end));
}

// Every trap but the tag answers from the decoded row. The proxy's own target (the RowText) is
// extensible and has only configurable properties, so the decoded row's answers keep
// the invariants of https://tc39.es/ecma262/#sec-proxy-object-internal-methods-and-internal-slots.
const handler: ProxyHandler<RowText> = {
  get: (text, property) => (property === TEXT ? text : Reflect.get(decoded(text), property)),
  set: (text, property, value) => Reflect.set(decoded(text), property, value),
  has: (text, property) => Reflect.has(decoded(text), property),
  deleteProperty: (text, property) => Reflect.deleteProperty(decoded(text), property),
  ownKeys: (text) => Reflect.ownKeys(decoded(text)),
  getOwnPropertyDescriptor: (text, property) => Reflect.getOwnPropertyDescriptor(decoded(text), property),
  defineProperty: (text, property, descriptor) => Reflect.defineProperty(decoded(text), property, descriptor),
  getPrototypeOf: (text) => Reflect.getPrototypeOf(decoded(text)),
};

/** A `Row` that is `text` until something reads it. */
export function textRow(text: RowText): Row {
  return new Proxy<RowText>(text, handler) as unknown as Row;
}

/** The text a row still is, without decoding it; undefined for any other row. */
export function rowText(row: Row): RowText | undefined {
  return (row as { [TEXT]?: RowText })[TEXT];
}

/** The row as a plain object: a text row decoded (once; the object it answers from), any other row itself. */
export function plainRow(row: Row): Row {
  const text = rowText(row);
  return text ? decoded(text) : row;
}
