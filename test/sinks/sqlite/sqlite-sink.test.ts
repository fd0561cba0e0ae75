import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent, Row, Value } from '../../../src/core/change-event.js';
import { PermanentError } from '../../../src/core/errors.js';
import { TableMapping, type TableConfig, type TargetTable } from '../../../src/core/mapping.js';
import { SqliteSink } from '../../../src/sinks/sqlite/sqlite-sink.js';
import { applySqliteChangelogSetup } from '../../../src/db/sqlite/changelog-setup.js';
import type { DeadLetter } from '../../../src/sinks/sink.js';
import { testContext } from '../../support/stream-context.js';

let dir: string;
let path: string;
let db: Database.Database;
let sink: SqliteSink;
let warnings: { message: string; context: Record<string, string> }[];
/** What the sink's open() found in the database (introspection), per configured table. */
let introspected: TargetTable[];

const SCHEMA = `
  CREATE TABLE shifts (id TEXT PRIMARY KEY, opened_by TEXT NOT NULL, updated_at DATETIME);
  CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    shift_id TEXT REFERENCES shifts (id),
    total NUMERIC,
    paid BOOLEAN,
    receipt BLOB,
    note TEXT,
    updated_at DATETIME,
    total_cents INTEGER GENERATED ALWAYS AS (CAST(total * 100 AS INTEGER)) STORED
  );
  -- Counts every row write whoever makes it: no-op updates must not show up here.
  CREATE TABLE write_log (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, op TEXT);
  CREATE TRIGGER log_ins AFTER INSERT ON orders BEGIN INSERT INTO write_log (id, op) VALUES (NEW.id, 'I'); END;
  CREATE TRIGGER log_upd AFTER UPDATE ON orders BEGIN INSERT INTO write_log (id, op) VALUES (NEW.id, 'U'); END;
  CREATE TRIGGER log_del AFTER DELETE ON orders BEGIN INSERT INTO write_log (id, op) VALUES (OLD.id, 'D'); END;`;

const SHIFTS: TableConfig = { source: 'public.shifts', target: 'shifts', conflict: 'newer-wins', updatedAt: 'updated_at' };
const ORDERS: TableConfig = { source: 'public.orders', target: 'orders', conflict: 'newer-wins', updatedAt: 'updated_at' };

async function openSink(tables: TableConfig[] = [SHIFTS, ORDERS]): Promise<SqliteSink> {
  sink = new SqliteSink(`sqlite:${path}`);
  const targets = await sink.open(testContext('pg-to-sqlite'), tables);
  introspected = targets;
  sink.bind(tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, (message, context) => warnings.push({ message, context }))));
  return sink;
}

/** Maps a source row like the stream does, so unknown and generated columns are dropped by TableMapping. */
function mapped(sinkTables: TableMapping[], event: ChangeEvent): ChangeEvent {
  return sinkTables.find((m) => m.source === event.table)!.mapEvent(event);
}

function change(table: string, op: ChangeEvent['op'], row: Row, position = '1'): ChangeEvent {
  return { table, op, key: { id: row.id ?? null }, row: op === 'delete' ? null : row, position, commitTime: new Date() };
}

const writes = () => (db.prepare(`SELECT count(*) AS n FROM write_log`).get() as { n: number }).n;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cdc-sqlite-sink-'));
  path = join(dir, 'pos.db');
  db = new Database(path);
  db.exec(SCHEMA);
  warnings = [];
});

afterEach(async () => {
  await sink?.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('sqlite sink', () => {
  it('upserts and deletes a batch set-based, converting booleans, binary, decimals and timestamps', async () => {
    await openSink();
    const result = await sink.apply({
      changes: [
        change('public.shifts', 'insert', { id: 'shift_001', opened_by: 'ana', updated_at: '2030-01-01T10:00:00+02:00' }),
        change('public.orders', 'insert', { id: 'ord_001', shift_id: 'shift_001', total: '12.50', paid: true, receipt: Buffer.from('cafe', 'hex'), updated_at: new Date('2030-01-01T08:00:00Z') }),
        change('public.orders', 'insert', { id: 'ord_002', shift_id: 'shift_001', total: 3, paid: false, receipt: null, updated_at: '2030-01-01 08:00:00+00' }),
      ],
      deadLetters: [],
      checkpoint: { stream: 'pg-to-sqlite', position: '10' },
    });
    expect(result.written).toBe(3);
    expect(db.prepare(`SELECT id, total, paid, CASE WHEN receipt IS NOT NULL THEN hex(receipt) END AS receipt, updated_at, total_cents FROM orders ORDER BY id`).all()).toEqual([
      { id: 'ord_001', total: 12.5, paid: 1, receipt: 'CAFE', updated_at: '2030-01-01 08:00:00', total_cents: 1250 },
      { id: 'ord_002', total: 3, paid: 0, receipt: null, updated_at: '2030-01-01 08:00:00', total_cents: 300 },
    ]);
    // A timestamp with a zone is stored in UTC, in SQLite's own notation.
    expect(db.prepare(`SELECT updated_at FROM shifts`).get()).toEqual({ updated_at: '2030-01-01 08:00:00' });
    expect(await sink.readCheckpoint('pg-to-sqlite')).toBe('10');

    const deleted = await sink.apply({ changes: [change('public.orders', 'delete', { id: 'ord_002' })], deadLetters: [] });
    expect(deleted.written).toBe(1);
    expect(db.prepare(`SELECT id FROM orders`).all()).toEqual([{ id: 'ord_001' }]);
  });

  it("writes timestamps in SQLite's canonical format so datetime() range queries find them", async () => {
    await openSink();
    const minute = 60_000;
    const now = Date.now();
    await sink.apply({
      changes: [
        // A Date (what drivers hand out), PostgreSQL's text forms with and without a zone, a Date with milliseconds.
        change('public.shifts', 'insert', { id: 'date', opened_by: 'a', updated_at: new Date('2030-01-01T08:00:00Z') }),
        change('public.shifts', 'insert', { id: 'zoned', opened_by: 'a', updated_at: '2030-01-01T10:00:00+02:00' }),
        change('public.shifts', 'insert', { id: 'wal', opened_by: 'a', updated_at: '2030-01-01 08:00:00.5+00' }),
        change('public.shifts', 'insert', { id: 'plain', opened_by: 'a', updated_at: '2030-01-01T08:00:00.123456' }),
        change('public.shifts', 'insert', { id: 'millis', opened_by: 'a', updated_at: new Date('2030-01-01T08:00:00.250Z') }),
        change('public.shifts', 'insert', { id: 'late', opened_by: 'a', updated_at: '2030-01-01T08:00:01.000Z' }),
        change('public.shifts', 'insert', { id: 'recent', opened_by: 'a', updated_at: new Date(now - minute) }),
        change('public.shifts', 'insert', { id: 'old', opened_by: 'a', updated_at: new Date(now - 24 * 60 * minute - minute) }),
      ],
      deadLetters: [],
    });
    const stored = (id: string) => (db.prepare(`SELECT updated_at FROM shifts WHERE id = ?`).get(id) as { updated_at: string }).updated_at;
    expect(['date', 'zoned', 'wal', 'plain', 'millis', 'late'].map(stored)).toEqual([
      '2030-01-01 08:00:00',
      '2030-01-01 08:00:00',
      '2030-01-01 08:00:00.500',
      '2030-01-01 08:00:00.123456',
      '2030-01-01 08:00:00.250',
      '2030-01-01 08:00:01',
    ]);
    const ids = (where: string) => (db.prepare(`SELECT id FROM shifts WHERE ${where} ORDER BY id`).all() as { id: string }[]).map((r) => r.id);
    // Whole seconds are exactly what datetime() writes.
    expect(ids(`updated_at LIKE '2030-%' AND updated_at = datetime(updated_at)`)).toEqual(['date', 'late', 'zoned']);
    expect(ids(`updated_at BETWEEN '2030-01-01 08:00:00' AND '2030-01-01 08:00:00.999'`)).toEqual(['date', 'millis', 'plain', 'wal', 'zoned']);
    expect(ids(`updated_at BETWEEN datetime('2030-01-01 08:00:00') AND datetime('2030-01-01 08:00:01')`)).toEqual(['date', 'late', 'millis', 'plain', 'wal', 'zoned']);
    // The everyday query: rows of the last day (with 'T' text, 'old' would be in and 'recent' out).
    expect(ids(`updated_at BETWEEN datetime('now', '-1 day') AND datetime('now')`)).toEqual(['recent']);
  });

  it("writes nothing for a timestamp that is the stored one in another notation (an application's .000 or T…Z), and still writes a real change of it", async () => {
    await openSink();
    db.exec(`INSERT INTO shifts (id, opened_by, updated_at) VALUES ('ms', 'a', '2030-01-01 08:00:00.000'), ('iso', 'a', '2030-01-01T08:00:00Z'), ('fine', 'a', '2030-01-01 08:00:00.0001')`);
    const before = writes();
    const same = await sink.apply({
      changes: [
        change('public.shifts', 'update', { id: 'ms', opened_by: 'a', updated_at: new Date('2030-01-01T08:00:00Z') }),
        change('public.shifts', 'update', { id: 'iso', opened_by: 'a', updated_at: '2030-01-01T08:00:00' }),
      ],
      deadLetters: [],
    });
    expect(same.written).toBe(0);
    expect(writes()).toBe(before);
    const stored = (id: string) => (db.prepare(`SELECT updated_at FROM shifts WHERE id = ?`).get(id) as { updated_at: string }).updated_at;
    expect(stored('ms')).toBe('2030-01-01 08:00:00.000');
    // A millisecond later is a change; so is a tenth of a millisecond, which the instant comparison cannot see.
    const changed = await sink.apply({
      changes: [
        change('public.shifts', 'update', { id: 'ms', opened_by: 'a', updated_at: new Date('2030-01-01T08:00:00.001Z') }),
        change('public.shifts', 'update', { id: 'fine', opened_by: 'a', updated_at: '2030-01-01T08:00:00.0002' }),
      ],
      deadLetters: [],
    });
    expect(changed.written).toBe(2);
    expect([stored('ms'), stored('fine')]).toEqual(['2030-01-01 08:00:00.001', '2030-01-01 08:00:00.0002']);
  });

  it('applies a TRUNCATE as a delete of every row of the table, children first, before the changes that followed it', async () => {
    await openSink();
    db.exec(`INSERT INTO shifts (id, opened_by) VALUES ('s1', 'ann'); INSERT INTO orders (id, shift_id, total) VALUES ('o1', 's1', 1), ('o2', 's1', 2)`);
    const truncate = (table: string): ChangeEvent => ({ table, op: 'truncate', key: {}, row: null, position: '2', commitTime: new Date() });
    const result = await sink.apply({
      changes: [truncate('public.orders'), truncate('public.shifts'), change('public.shifts', 'insert', { id: 's2', opened_by: 'bo' })],
      deadLetters: [],
      checkpoint: { stream: 'pg-to-sqlite', position: '2' },
    });
    expect(result.written).toBe(4);
    expect(db.prepare(`SELECT id FROM shifts`).all()).toEqual([{ id: 's2' }]);
    expect(db.prepare(`SELECT count(*) AS n FROM orders`).get()).toEqual({ n: 0 });
    expect(await sink.readCheckpoint('pg-to-sqlite')).toBe('2');
  });

  it('is idempotent: the same batch twice leaves the same rows and writes nothing the second time', async () => {
    await openSink();
    const batch = {
      changes: [
        change('public.shifts', 'insert', { id: 's1', opened_by: 'ana', updated_at: '2030-01-01T00:00:00Z' }),
        change('public.orders', 'update', { id: 'o1', shift_id: 's1', total: 1, paid: true, note: 'x', updated_at: '2030-01-01T00:00:00Z' }),
        change('public.orders', 'delete', { id: 'o9' }),
      ],
      deadLetters: [],
      checkpoint: { stream: 'pg-to-sqlite', position: '5' },
    };
    expect((await sink.apply(batch)).written).toBe(2);
    const rows = db.prepare(`SELECT * FROM orders`).all();
    const before = writes();
    expect((await sink.apply(batch)).written).toBe(0);
    expect(db.prepare(`SELECT * FROM orders`).all()).toEqual(rows);
    // The update equal to the stored row wrote nothing: no trigger fired.
    expect(writes()).toBe(before);
  });

  it('commits dead letters and the checkpoint with the changes, and rolls all of them back on an error', async () => {
    await openSink();
    const letter: DeadLetter = { stream: 'pg-to-sqlite', table: 'public.orders', key: { id: 'bad' }, payload: '{}', error: 'bad json', reason: 'malformed', position: '7' };
    await sink.apply({ changes: [change('public.shifts', 'insert', { id: 's1', opened_by: 'ana' })], deadLetters: [letter], checkpoint: { stream: 'pg-to-sqlite', position: '7' } });
    expect(db.prepare(`SELECT stream, table_name, key, payload, error, reason, position FROM cdc_sync_dead_letters`).all()).toEqual([
      { stream: 'pg-to-sqlite', table_name: 'public.orders', key: '{"id":"bad"}', payload: '{}', error: 'bad json', reason: 'malformed', position: '7' },
    ]);
    // NOT NULL violation on the second change: nothing of the batch stays, the checkpoint does not move.
    await expect(
      sink.apply({
        changes: [change('public.shifts', 'insert', { id: 's2', opened_by: 'bo' }), change('public.shifts', 'insert', { id: 's3', opened_by: null })],
        deadLetters: [{ ...letter, position: '8' }],
        checkpoint: { stream: 'pg-to-sqlite', position: '8' },
      }),
    ).rejects.toMatchObject({ transient: false, reason: 'constraint' });
    expect(db.prepare(`SELECT id FROM shifts ORDER BY id`).all()).toEqual([{ id: 's1' }]);
    expect((db.prepare(`SELECT count(*) AS n FROM cdc_sync_dead_letters`).get() as { n: number }).n).toBe(1);
    expect(await sink.readCheckpoint('pg-to-sqlite')).toBe('7');
    expect(db.inTransaction).toBe(false);
  });

  it('names the missing parent of a child: orders:ord_001 missing shift_id -> shifts[shift_001]', async () => {
    await openSink();
    const error = await sink
      .apply({
        changes: [
          change('public.shifts', 'insert', { id: 'shift_002', opened_by: 'ana' }),
          change('public.orders', 'insert', { id: 'ord_000', shift_id: 'shift_002', total: 1 }),
          change('public.orders', 'insert', { id: 'ord_001', shift_id: 'shift_001', total: 1 }),
        ],
        deadLetters: [],
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).reason).toBe('missing-parent');
    expect((error as PermanentError).message).toBe('orders:ord_001 missing shift_id -> shifts[shift_001]');
    // The parent in the same batch counted as present, and the whole batch rolled back.
    expect(db.prepare(`SELECT count(*) AS n FROM orders`).get()).toEqual({ n: 0 });
  });

  it('skips source columns the target lacks or generates, with one warning per column', async () => {
    await openSink();
    const targets = [SHIFTS, ORDERS];
    const target = introspected;
    const mappings = targets.map((t, i) => new TableMapping(t, target[i]!, `tables[${i}]`, (message, context) => warnings.push({ message, context })));
    sink.bind(mappings);
    const rows = [1, 2, 3].map((n) =>
      mapped(mappings, change('public.orders', 'insert', { id: `o${n}`, total: n, terminal_id: 't1', total_cents: 999, sync_status: 'dirty' })),
    );
    await sink.apply({ changes: rows, deadLetters: [] });
    expect(db.prepare(`SELECT id, total_cents FROM orders ORDER BY id`).all()).toEqual([
      { id: 'o1', total_cents: 100 },
      { id: 'o2', total_cents: 200 },
      { id: 'o3', total_cents: 300 },
    ]);
    expect(warnings.map((w) => [w.message, w.context.column])).toEqual([
      ['source column has no target column; skipped', 'terminal_id'],
      ['target column is generated; skipped', 'total_cents'],
      ['source column has no target column; skipped', 'sync_status'],
    ]);
  });

  it('newer-wins: keeps a newer stored row, reports the conflict, and applies newer changes', async () => {
    await openSink();
    await sink.apply({ changes: [change('public.shifts', 'insert', { id: 's1', opened_by: 'stored', updated_at: '2030-01-01T00:00:05Z' })], deadLetters: [] });
    const older = await sink.apply({ changes: [change('public.shifts', 'update', { id: 's1', opened_by: 'older', updated_at: '2030-01-01T00:00:04+00:00' })], deadLetters: [] });
    expect(older).toEqual({ written: 0, conflicts: [{ table: 'public.shifts', key: { id: 's1' } }] });
    expect(db.prepare(`SELECT opened_by FROM shifts`).get()).toEqual({ opened_by: 'stored' });
    // Same instant in another notation is not older.
    const newer = await sink.apply({ changes: [change('public.shifts', 'update', { id: 's1', opened_by: 'newer', updated_at: '2030-01-01T02:00:06+02:00' })], deadLetters: [] });
    expect(newer).toEqual({ written: 1, conflicts: [] });
    expect(db.prepare(`SELECT opened_by, updated_at FROM shifts`).get()).toEqual({ opened_by: 'newer', updated_at: '2030-01-01 00:00:06' });
  });

  it('newer-wins compares by instant whatever the stored notation: ISO text with T and Z written before, and the canonical form', async () => {
    await openSink();
    const stored = ['2030-01-01T00:00:05Z', '2030-01-01T00:00:05.000Z', '2030-01-01T00:00:05', '2030-01-01 00:00:05', '2030-01-01T02:00:05+02:00'];
    const insert = db.prepare(`INSERT INTO shifts VALUES (?, 'stored', ?)`);
    stored.forEach((at, i) => insert.run(`s${i}`, at));
    const update = (opened_by: string, updated_at: Value) =>
      sink.apply({ changes: stored.map((_, i) => change('public.shifts', 'update', { id: `s${i}`, opened_by, updated_at })), deadLetters: [] });

    const older = await update('older', new Date('2030-01-01T00:00:04.999Z'));
    expect(older.written).toBe(0);
    expect(older.conflicts).toHaveLength(stored.length);
    // The same instant is not older: it applies, and the row now holds the canonical text.
    const same = await update('same', '2030-01-01 02:00:05+02');
    expect(same).toEqual({ written: stored.length, conflicts: [] });
    expect(db.prepare(`SELECT DISTINCT updated_at FROM shifts`).all()).toEqual([{ updated_at: '2030-01-01 00:00:05' }]);
    const newer = await update('newer', '2030-01-01T00:00:05.001Z');
    expect(newer).toEqual({ written: stored.length, conflicts: [] });
    expect(db.prepare(`SELECT DISTINCT opened_by, updated_at FROM shifts`).all()).toEqual([{ opened_by: 'newer', updated_at: '2030-01-01 00:00:05.001' }]);
  });

  it('newer-wins in a two-way set-up: a lost conflict puts the stored winner into the local change log (ping-back)', async () => {
    applySqliteChangelogSetup(db, ['shifts']);
    await openSink();
    db.prepare(`INSERT INTO shifts VALUES ('s1', 'local newer', '2030-01-01T00:00:05Z')`).run();
    const result = await sink.apply({ changes: [change('public.shifts', 'update', { id: 's1', opened_by: 'cloud older', updated_at: '2030-01-01T00:00:01Z' })], deadLetters: [] });
    expect(result.conflicts).toEqual([{ table: 'public.shifts', key: { id: 's1' } }]);
    const log = db.prepare(`SELECT table_name, op, row_data, origin FROM cdc_sync_changes ORDER BY id`).all() as { row_data: string; origin: string | null }[];
    // The application's insert, then the ping-back of the row as stored.
    expect(log).toHaveLength(2);
    expect(log[1]).toMatchObject({ table_name: 'shifts', op: 'U', origin: 'cdc-sync ping-back' });
    expect(JSON.parse(log[1]!.row_data)).toEqual({ id: 's1', opened_by: 'local newer', updated_at: '2030-01-01T00:00:05Z' });
  });

  it('by change time: a change that lost to a local delete sends the delete back, stamped with the delete\'s own time', async () => {
    applySqliteChangelogSetup(db, ['shifts']);
    await openSink([{ source: 'public.shifts', target: 'shifts' }]);
    db.prepare(`INSERT INTO shifts VALUES ('s1', 'local', NULL)`).run();
    db.prepare(`DELETE FROM shifts WHERE id = 's1'`).run();
    const { captured_at: deletedAt } = db.prepare(`SELECT captured_at FROM cdc_sync_changes WHERE op = 'D'`).get() as { captured_at: string };
    const older = { ...change('public.shifts', 'update', { id: 's1', opened_by: 'cloud older', updated_at: null }), commitTime: new Date(Date.now() - 60_000) };
    const result = await sink.apply({ changes: [older], deadLetters: [] });
    expect(result.conflicts).toEqual([{ table: 'public.shifts', key: { id: 's1' } }]);
    expect(db.prepare(`SELECT count(*) AS n FROM shifts`).get()).toEqual({ n: 0 });
    const sent = db.prepare(`SELECT op, old_data, captured_at FROM cdc_sync_changes WHERE origin = 'cdc-sync ping-back'`).all();
    expect(sent).toEqual([{ op: 'D', old_data: JSON.stringify({ id: 's1' }), captured_at: deletedAt }]);
  });

  it('changes only owned columns of existing rows and writes new rows whole', async () => {
    await openSink();
    const owned: TableConfig = { source: 'public.orders', target: 'orders', owns: ['note'] };
    const [shifts, orders] = introspected;
    sink.bind([new TableMapping(SHIFTS, shifts!, 'tables[0]', () => {}), new TableMapping(owned, orders!, 'tables[1]', () => {})]);
    await sink.apply({ changes: [change('public.orders', 'insert', { id: 'o1', total: 1, note: 'a' })], deadLetters: [] });
    await sink.apply({ changes: [change('public.orders', 'update', { id: 'o1', total: 99, note: 'b' })], deadLetters: [] });
    expect(db.prepare(`SELECT total, note FROM orders`).get()).toEqual({ total: 1, note: 'b' });
  });
});

it('introspects SQLite types, generated columns and keys', async () => {
  await openSink();
  const orders = introspected[1]!;
  expect(orders.primaryKey).toEqual(['id']);
  expect(Object.fromEntries(orders.columns.map((c) => [c.name, `${c.type}${c.generated ? ' generated' : ''}`]))).toEqual({
    id: 'text',
    shift_id: 'text',
    total: 'decimal',
    paid: 'boolean',
    receipt: 'binary',
    note: 'text',
    updated_at: 'timestamptz',
    total_cents: 'integer generated',
  });
});
