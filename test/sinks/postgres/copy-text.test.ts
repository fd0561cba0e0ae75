import { describe, expect, it } from 'vitest';
import { CopyLines, TupleShape } from '../../../src/cdc/postgres/wal-row-text.js';
import type { Row } from '../../../src/core/change-event.js';
import { rowText } from '../../../src/core/row-text.js';
import { copyData } from '../../../src/sinks/postgres/copy-text.js';
import { pgoutputInsert } from '../../support/pg-messages.js';

const plain = (...names: string[]) => names.map((name) => ({ name, json: false }));

/** The COPY data as text. */
const copyText = (...args: Parameters<typeof copyData>) => {
  const pieces = copyData(...args);
  return pieces && Buffer.concat(pieces).toString('utf8');
};

/** Text rows as the postgres-wal source makes them (pgoutput Inserts of id int8, name text, qty int4). */
function textRows(values: (string | null)[][], lines = new CopyLines()): Row[] {
  const shape = new TupleShape(
    [
      { name: 'id', typeOid: 20, key: true },
      { name: 'name', typeOid: 25, key: false },
      { name: 'qty', typeOid: 23, key: false },
    ],
    ['id'],
  );
  return values.map((row) => shape.newTuple(pgoutputInsert(row), 0, lines)!);
}

describe('copyData', () => {
  it('writes one tab-separated line per row, in the given column order, with \\N for null and missing values', () => {
    expect(copyText([{ b: 'x', a: 1 }, { a: null }], plain('a', 'b'))).toBe('1\tx\n\\N\t\\N\n');
  });

  it('escapes backslash, newline, carriage return and tab, and leaves other text as it is', () => {
    const text = copyText([{ s: 'C:\\new\tline\r\nend' }, { s: `O'Brien "q" Zoë ✓ 𝄞 \\N` }], plain('s'));
    expect(text).toBe(`C:\\\\new\\tline\\r\\nend\nO'Brien "q" Zoë ✓ 𝄞 \\\\N\n`);
  });

  it('gives each value the text json_populate_recordset would: booleans, bigints, Dates, binary as bytea hex', () => {
    const row = { t: true, f: false, big: 9007199254740993n, at: new Date('2024-02-29T23:59:59.123Z'), bin: Buffer.from([0, 1, 255]), n: 1.5 };
    expect(copyText([row], plain('t', 'f', 'big', 'at', 'bin', 'n'))).toBe('true\tfalse\t9007199254740993\t2024-02-29T23:59:59.123Z\t\\\\x0001ff\t1.5\n');
  });

  it("writes NaN, the infinities and -0 as PostgreSQL's float input reads them (not null), and null for an invalid Date", () => {
    const row = { a: Number.NaN, b: Number.POSITIVE_INFINITY, c: Number.NEGATIVE_INFINITY, z: -0, d: new Date('nope') };
    expect(copyText([row], plain('a', 'b', 'c', 'z', 'd'))).toBe('NaN\tInfinity\t-Infinity\t-0\t\\N\n');
  });

  it('writes the JSON text of values bound for json columns, strings included', () => {
    const columns = [{ name: 'doc', json: true }];
    expect(copyText([{ doc: { a: [1, 'x\ty'] } }, { doc: 'abc' }, { doc: 5 }, { doc: null }], columns)).toBe('{"a":[1,"x\\\\ty"]}\n"abc"\n5\n\\N\n');
  });

  it('declines rows with an object bound for a column that is not json (arrays, composites go as json)', () => {
    expect(copyText([{ tags: ['a', 'b'] }], plain('tags'))).toBeNull();
    expect(copyText([{ a: 1 }, { a: { x: 1 } }], plain('a'))).toBeNull();
  });

  it('sends text rows as their lines, undecoded, a long run of consecutive lines of one buffer as one piece of it', () => {
    const rows = textRows([
      ['1', 'a\tb', '3'],
      ['2', null, '4'],
      ['3', 'c', null],
    ]);
    expect(copyText(rows, plain('id', 'name', 'qty'))).toBe('1\ta\\tb\t3\n2\t\\N\t4\n3\tc\t\\N\n');
    expect(rows.every((row) => rowText(row)!.row === undefined)).toBe(true);
    const long = textRows(Array.from({ length: 1000 }, (_, i) => [String(i), 'x'.repeat(100), '1']));
    const pieces = copyData(long, plain('id', 'name', 'qty'))!;
    expect(pieces).toHaveLength(1);
    expect(pieces[0]!.buffer).toBe(rowText(long[0]!)!.bytes.buffer);
    expect(long.every((row) => rowText(row)!.row === undefined)).toBe(true);
  });

  it('copies short runs of text rows (a batch whose updates were folded into its inserts), so the data goes in a few pieces, not one per run', () => {
    const rows = textRows(Array.from({ length: 3000 }, (_, i) => [String(i), `row ${i}`, String(i % 7)]));
    // Every other row dropped: 1,500 runs of one line each.
    const kept = rows.filter((_, i) => i % 2 === 0);
    const pieces = copyData(kept, plain('id', 'name', 'qty'))!;
    expect(pieces.length).toBeLessThanOrEqual(3);
    const expected = kept.map((_, k) => `${2 * k}\trow ${2 * k}\t${(2 * k) % 7}\n`).join('');
    expect(Buffer.concat(pieces).toString('utf8')).toBe(expected);
    expect(kept.every((row) => rowText(row)!.row === undefined)).toBe(true);
    // Short runs, long lines and plain rows between them, past the first guess of the size: every byte in order.
    const wide = textRows(Array.from({ length: 400 }, (_, i) => [String(i), 'w'.repeat(i * 37), null]));
    const mixed = wide.flatMap((row, i) => (i % 3 === 0 ? [] : i % 3 === 1 ? [row] : [row, { id: `p${i}`, name: 'plain\tone', qty: i }]));
    const expectedMixed = wide
      .flatMap((_, i) => (i % 3 === 0 ? [] : i % 3 === 1 ? [`${i}\t${'w'.repeat(i * 37)}\t\\N\n`] : [`${i}\t${'w'.repeat(i * 37)}\t\\N\n`, `p${i}\tplain\\tone\t${i}\n`]))
      .join('');
    expect(copyText(mixed, plain('id', 'name', 'qty'))).toBe(expectedMixed);
  });

  it('keeps the order of text rows and plain rows mixed, and writes a text row of other columns from its values', () => {
    const [a, b] = textRows([
      ['1', 'a', '3'],
      ['2', 'b', '4'],
    ]);
    const rows = [a!, { id: '9', name: 'plain', qty: 1 }, b!];
    expect(copyText(rows, plain('id', 'name', 'qty'))).toBe('1\ta\t3\n9\tplain\t1\n2\tb\t4\n');
    expect(copyText(rows, plain('qty', 'id', 'name'))).toBe('3\t1\ta\n1\t9\tplain\n4\t2\tb\n');
  });

  it('writes nothing for no rows', () => {
    expect(copyText([], plain('a'))).toBe('');
  });

  it('grows past its first guess of the size without losing or mangling a byte', () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ a: i, s: `${'ü✓'.repeat(200)}\t${i}` }));
    const expected = rows.map((r) => `${r.a}\t${'ü✓'.repeat(200)}\\t${r.a}\n`).join('');
    expect(copyText(rows, plain('a', 's'))).toBe(expected);
  });
});
