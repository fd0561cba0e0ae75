import type { Row, Value } from '../../core/change-event.js';
import { jsonTextOf, jsonlessNumberText } from '../../core/json.js';
import { rowText, type RowText } from '../../core/row-text.js';

/**
 * Rows as COPY data in text format (https://www.postgresql.org/docs/current/sql-copy.html,
 * "Text Format"): one line per row, columns separated by tabs, `\N` for
 * null, and backslash, newline, carriage return and tab escaped. Each value
 * is exactly the text json_populate_recordset would hand the column's
 * input function for the same row (so both statements write the same
 * values): strings as they are, numbers and bigints as digits, booleans as
 * true/false (NaN, Infinity and -0 as such: see toFloat), Dates as ISO
 * 8601, binary as bytea hex, and null for an invalid Date.
 *
 * A json or jsonb column gets the value's JSON text (a JsonText's own), as
 * the upsert reads it (a string stays a JSON string).
 *
 * A text row (core/row-text.ts) whose columns are these, in this order, is
 * its line already: a long run of such lines that follow each other in their
 * source's buffer goes as one piece of it, not copied. The mapping kept
 * the row as text only for columns of its type, whose input reads that text
 * as the value itself.
 *
 * The data comes in pieces, in order. Returns null when a value has no
 * single text form here (objects and arrays bound for other columns, which
 * json_populate_recordset maps onto arrays and composites by the column's
 * type): those rows take the json statement.
 */
export function copyData(rows: Row[], columns: { name: string; json: boolean }[]): Buffer[] | null {
  // Each line is written out as soon as it is made, from its fields joined at once: no text of the
  // whole batch, and no string per field and tab, for the garbage collector to carry.
  let data = Buffer.allocUnsafe(Math.max(1024, rows.length * 128)) as Utf8Writing;
  let length = 0;
  const fields: string[] = new Array<string>(columns.length);
  const pieces: Buffer[] = [];
  /** Where the lines written to `data` since the last piece start. */
  let written = 0;
  let run: { bytes: Buffer; start: number; end: number } | undefined;
  /** Room for `size` more bytes in `data`, `done` rows written. */
  const reserve = (size: number, done: number) => {
    if (data.length - length >= size) return;
    // Sized by the rows written so far, so a batch grows its buffer about once; the lines already made a piece stay where they are.
    if (length > written) pieces.push(data.subarray(written, length));
    const estimate = Math.ceil((length / (done + 1)) * rows.length * 1.1);
    data = Buffer.allocUnsafe(Math.max(data.length, estimate - length, size)) as Utf8Writing;
    length = 0;
    written = 0;
  };
  const endRun = (done: number) => {
    if (!run) return;
    const size = run.end - run.start;
    if (size >= SHARED_RUN_MIN) {
      if (length > written) pieces.push(data.subarray(written, length));
      written = length;
      pieces.push(run.bytes.subarray(run.start, run.end));
    } else {
      reserve(size, done);
      length = copyBytes(run.bytes, run.start, run.end, data, length);
    }
    run = undefined;
  };
  for (let r = 0; r < rows.length; r += 1) {
    const row = rows[r]!;
    const text = rowText(row);
    if (text && inOrder(text, columns)) {
      if (run && run.bytes === text.bytes && run.end === text.start) run.end = text.end;
      else {
        endRun(r);
        run = { bytes: text.bytes, start: text.start, end: text.end };
      }
      continue;
    }
    endRun(r);
    for (let c = 0; c < columns.length; c += 1) {
      const column = columns[c]!;
      const value = row[column.name];
      const field = typeof value === 'string' && !column.json ? escape(value) : column.json ? jsonField(value) : fieldText(value);
      if (field === undefined) return null;
      fields[c] = field;
    }
    const line = fields.join('\t');
    // At most three UTF-8 bytes per UTF-16 code unit, and the newline.
    reserve(line.length * 3 + 1, r);
    length += data.utf8Write(line, length);
    data[length++] = 0x0a;
  }
  endRun(rows.length);
  if (length > written) pieces.push(data.subarray(written, length));
  return pieces;
}

/**
 * A run of text rows' consecutive lines shorter than this is copied into
 * the data, not sent as a piece of its own buffer: each piece is one
 * CopyData message, two writes to the socket (pg-copy-streams), and a batch
 * whose updates were folded into its inserts or whose deleted rows were
 * dropped breaks its inserts into runs of a few lines (in bench:wal, 1,600
 * pieces a batch, ~0.8 s of the process's CPU in socket writes).
 */
const SHARED_RUN_MIN = 64 * 1024;

/**
 * Below this many bytes a run is copied byte by byte: Buffer#copy makes a
 * Uint8Array view of the source range for every call, and a batch copies
 * ~1,600 runs of a few hundred bytes (in bench:wal, ~60 ms of the process's
 * CPU in Buffer#copy).
 */
const LOOP_COPY_MAX = 1024;

/** Copies source[start, end) to target at `at`; returns where the copy ends in target. */
function copyBytes(source: Buffer, start: number, end: number, target: Buffer, at: number): number {
  if (end - start >= LOOP_COPY_MAX) return at + source.copy(target, at, start, end);
  for (let i = start; i < end; i += 1) target[at++] = source[i]!;
  return at;
}

/** The last column list inOrder compared: a batch's text rows nearly all share one. */
let compared: { text: readonly string[]; columns: readonly { name: string }[]; same: boolean } | undefined;

/** Whether a text row's line has exactly these columns, in this order. */
function inOrder(text: RowText, columns: readonly { name: string }[]): boolean {
  if (compared?.text !== text.columns || compared.columns !== columns) {
    const same = text.columns.length === columns.length && columns.every((c, i) => c.name === text.columns[i]);
    compared = { text: text.columns, columns, same };
  }
  return compared.same;
}

/** Node.js Buffers have utf8Write (what write(…, 'utf8') calls); it is not in @types/node. */
type Utf8Writing = Buffer & { utf8Write(text: string, offset: number): number };

const SPECIAL = /[\\\n\r\t]/;
const SPECIAL_ALL = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escape(text: string): string {
  return SPECIAL.test(text) ? text.replace(SPECIAL_ALL, (c) => ESCAPES[c]!) : text;
}

function jsonField(value: Value | undefined): string {
  return value === null || value === undefined ? '\\N' : escape(jsonTextOf(value));
}

/** The field as COPY text, or undefined when the value must go as json. */
function fieldText(value: Value | undefined): string | undefined {
  switch (typeof value) {
    case 'string':
      return escape(value);
    case 'number':
      // PostgreSQL's float input reads these; an integer or numeric column refuses them rather than storing NULL.
      return jsonlessNumberText(value) ?? String(value);
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
      return '\\N';
    case 'object':
      if (value === null) return '\\N';
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? '\\N' : value.toISOString();
      // bytea's hex input, its backslash escaped for COPY.
      if (value instanceof Uint8Array) return `\\\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
      return undefined;
    default:
      return undefined;
  }
}
