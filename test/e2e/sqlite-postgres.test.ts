import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { instantMicros } from '../../src/core/timestamps.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';

/**
 * The older point-of-sale sync as a cdc-sync configuration: a local SQLite
 * database and a cloud PostgreSQL kept equal both ways by one process with
 * two streams (sqlite-changelog → postgres, postgres-changelog → sqlite).
 * Shifts are parents of orders; the two schemas differ (local-only columns,
 * a cloud-only column, a generated column in the cloud); both sides resolve
 * concurrent edits by newer-wins on updated_at.
 */
let pg: TestDatabase;
let sqlitePath: string;
let sqlite: Database.Database;
let configPath: string;
const processes = new CliProcesses();

const SQLITE_SCHEMA = `
  CREATE TABLE shifts (id TEXT PRIMARY KEY, opened_by TEXT NOT NULL, terminal_id TEXT, updated_at DATETIME NOT NULL);
  CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    shift_id TEXT NOT NULL REFERENCES shifts (id),
    qty INTEGER NOT NULL,
    price NUMERIC NOT NULL,
    available_quantity INTEGER,   -- generated in the cloud: not sent there
    sync_status TEXT,             -- local bookkeeping: the cloud has no such column
    updated_at DATETIME NOT NULL
  );`;

const PG_SCHEMA = `
  CREATE TABLE shifts (id text PRIMARY KEY, opened_by text, updated_at timestamptz NOT NULL);
  CREATE TABLE orders (
    id text PRIMARY KEY,
    shift_id text NOT NULL REFERENCES shifts,
    qty int NOT NULL,
    price numeric(10,2) NOT NULL,
    available_quantity int GENERATED ALWAYS AS (qty * 10) STORED,
    cloud_note text,
    updated_at timestamptz NOT NULL
  );`;

beforeAll(async () => {
  pg = await createTestDatabase('sqlite_pg');
  await pg.query(PG_SCHEMA);
  sqlitePath = join(mkdtempSync(join(tmpdir(), 'cdc-sync-pos-')), 'pos.db');
  sqlite = new Database(sqlitePath);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.exec(SQLITE_SCHEMA);
  const newer = `conflict: newer-wins, updatedAt: updated_at`;
  configPath = writeConfig(`
streams:
  - name: pos-to-cloud
    source: { type: sqlite-changelog, url: "sqlite:${sqlitePath}", idleIntervalMs: 50 }
    sink: { type: postgres, url: "${pg.url}" }
    tables:
      - { source: shifts, target: public.shifts, ${newer}, exclude: [terminal_id] }
      - { source: orders, target: public.orders, ${newer} }
    batch: { maxSize: 500, maxWaitMs: 20 }
  - name: cloud-to-pos
    direction: reverse
    source: { type: postgres-changelog, url: "${pg.url}", idleIntervalMs: 50 }
    sink: { type: sqlite, url: "sqlite:${sqlitePath}" }
    tables:
      - { source: public.shifts, target: shifts, ${newer} }
      - { source: public.orders, target: orders, ${newer} }
    batch: { maxSize: 500, maxWaitMs: 20 }
http: { port: 0, host: 127.0.0.1 }
`);
  const init = await runCliToEnd(['init-sql', '--config', configPath]);
  expect(init.code, init.stderr).toBe(0);
  const [forSqlite, forPg] = init.stdout.split(/^-- stream "cloud-to-pos".*$/m);
  expect(forSqlite).toContain('CREATE TRIGGER "cdc_sync_orders_update" AFTER UPDATE ON "orders"');
  sqlite.exec(forSqlite!);
  await pg.query(forPg!);
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  sqlite?.close();
  await pg?.drop();
});

function start(env: Record<string, string> = {}): CliProcess {
  return processes.add(runCli(['run', '--config', configPath], env));
}

interface OrderRow {
  id: string;
  shift_id: string;
  qty: number;
  price: number;
  updated_at: number;
}

/** Milliseconds since 1970; SQLite text without a zone is UTC (Date.parse would read it as local time). */
const instant = (v: unknown) => (v instanceof Date ? v.getTime() : Number((instantMicros(v) ?? 0n) / 1000n));

async function pgOrders(): Promise<OrderRow[]> {
  const rows = await pg.query<Record<string, unknown>>(`SELECT id, shift_id, qty, price::float8 AS price, updated_at FROM orders ORDER BY id`);
  return rows.map((r) => ({ id: r.id as string, shift_id: r.shift_id as string, qty: r.qty as number, price: r.price as number, updated_at: instant(r.updated_at) }));
}

function sqliteOrders(): OrderRow[] {
  const rows = sqlite.prepare(`SELECT id, shift_id, qty, price, updated_at FROM orders ORDER BY id`).all() as Record<string, unknown>[];
  return rows.map((r) => ({ id: r.id as string, shift_id: r.shift_id as string, qty: r.qty as number, price: r.price as number, updated_at: instant(r.updated_at) }));
}

async function ordersEqual(): Promise<boolean> {
  return JSON.stringify(await pgOrders()) === JSON.stringify(sqliteOrders());
}

const sqliteCount = (sql: string) => (sqlite.prepare(sql).get() as { n: number }).n;

describe('SQLite ↔ PostgreSQL two-way, through the CLI', () => {
  it('syncs parents before children both ways, skips columns the other side lacks or generates with one warning, and captures no echo', async () => {
    const cli = start();
    const write = sqlite.transaction(() => {
      sqlite.prepare(`INSERT INTO shifts VALUES ('shift_001', 'ana', 'till-1', '2030-01-01T08:00:00Z')`).run();
      for (let i = 1; i <= 3; i += 1) {
        sqlite.prepare(`INSERT INTO orders VALUES (?, 'shift_001', ?, 2.5, 99, 'dirty', '2030-01-01T08:00:00Z')`).run(`ord_00${i}`, i);
      }
    });
    write();
    await pg.query(`INSERT INTO shifts VALUES ('shift_002', 'bo', '2030-01-01T09:00:00Z')`);
    await pg.query(`INSERT INTO orders (id, shift_id, qty, price, cloud_note, updated_at) VALUES ('ord_101', 'shift_002', 7, 12.50, 'web order', '2030-01-01T09:00:00Z')`);

    await waitFor(async () => sqliteOrders().length === 4 && (await ordersEqual()), 30_000, () => cli.stderr().slice(-3000));
    expect(sqlite.prepare(`SELECT id, opened_by, terminal_id FROM shifts ORDER BY id`).all()).toEqual([
      { id: 'shift_001', opened_by: 'ana', terminal_id: 'till-1' },
      { id: 'shift_002', opened_by: 'bo', terminal_id: null },
    ]);
    // The cloud computed its generated column itself; the local value (99) was not sent.
    expect(await pg.query(`SELECT available_quantity FROM orders WHERE id = 'ord_002'`)).toEqual([{ available_quantity: 20 }]);
    // The cloud's generated value arrives locally as a plain column.
    expect(sqlite.prepare(`SELECT available_quantity, sync_status FROM orders WHERE id = 'ord_101'`).get()).toEqual({ available_quantity: 70, sync_status: null });

    const warnings = cli.logs.filter((l) => typeof l.msg === 'string' && l.msg.endsWith('skipped'));
    const described = warnings.map((w) => `${w.stream} ${w.msg} ${w.column}`).sort();
    expect(described).toEqual([
      'cloud-to-pos source column has no target column; skipped cloud_note',
      'pos-to-cloud source column has no target column; skipped sync_status',
      'pos-to-cloud target column is generated; skipped available_quantity',
    ]);

    await new Promise((r) => setTimeout(r, 300));
    // Only the users' writes entered the change logs: the sinks' writes were not captured again.
    expect(sqliteCount(`SELECT count(*) AS n FROM cdc_sync_changes`)).toBe(4);
    expect((await pg.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.changes`))[0]!.n).toBe('2');
    expect(await processes.stop(cli)).toBe(0);
  });

  it('dead-letters a child whose parent is missing with a message naming the parent, and retry-failed applies it once the parent arrived', async () => {
    const cli = start();
    // The shift cannot be stored locally (opened_by is required there), so its order has no parent.
    await pg.query(`INSERT INTO shifts VALUES ('shift_009', NULL, '2030-01-02T08:00:00Z')`);
    await pg.query(`INSERT INTO orders (id, shift_id, qty, price, updated_at) VALUES ('ord_009', 'shift_009', 1, 1, '2030-01-02T08:00:00Z')`);
    await waitFor(() => sqliteCount(`SELECT count(*) AS n FROM cdc_sync_dead_letters`) === 2, 30_000, () => cli.stderr().slice(-3000));
    const letters = sqlite.prepare(`SELECT table_name, reason, error FROM cdc_sync_dead_letters ORDER BY id`).all() as { table_name: string; reason: string; error: string }[];
    expect(letters.map((l) => [l.table_name, l.reason])).toEqual([
      ['public.shifts', 'constraint'],
      ['public.orders', 'missing-parent'],
    ]);
    expect(letters[1]!.error).toMatch(/^orders:ord_009 missing shift_id -> shifts\[shift_009\]( |$)/);
    const metrics = await cli.metrics();
    expect(metricValue(metrics, 'cdc_sync_events_failed_total', { stream: 'cloud-to-pos', table: 'public.orders', reason: 'missing-parent' })).toBe(1);

    // The cloud fixes the shift: it arrives as an update and is inserted locally.
    await pg.query(`UPDATE shifts SET opened_by = 'cy', updated_at = '2030-01-02T08:01:00Z' WHERE id = 'shift_009'`);
    await waitFor(() => sqliteCount(`SELECT count(*) AS n FROM shifts WHERE id = 'shift_009'`) === 1, 30_000, () => cli.stderr().slice(-3000));
    expect(await processes.stop(cli)).toBe(0);
    const retry = await runCliToEnd(['retry-failed', '--config', configPath, '--stream', 'cloud-to-pos']);
    expect(retry.code, retry.stderr + retry.stdout).toBe(0);
    expect(sqlite.prepare(`SELECT shift_id FROM orders WHERE id = 'ord_009'`).get()).toEqual({ shift_id: 'shift_009' });
  });

  it('resolves concurrent edits by newer-wins by updated_at on both sides and counts the losers', async () => {
    // ord_001: the cloud's edit is newer; ord_002: the local edit is newer.
    sqlite.prepare(`UPDATE orders SET qty = 100, updated_at = '2030-06-01T00:00:00Z' WHERE id = 'ord_001'`).run();
    await pg.query(`UPDATE orders SET qty = 200, updated_at = '2030-06-01T00:00:05Z' WHERE id = 'ord_001'`);
    sqlite.prepare(`UPDATE orders SET qty = 300, updated_at = '2030-06-01T00:00:05Z' WHERE id = 'ord_002'`).run();
    await pg.query(`UPDATE orders SET qty = 400, updated_at = '2030-06-01T00:00:00Z' WHERE id = 'ord_002'`);
    const cli = start();
    await waitFor(
      async () => (await ordersEqual()) && sqliteOrders().find((o) => o.id === 'ord_001')?.qty === 200 && sqliteOrders().find((o) => o.id === 'ord_002')?.qty === 300,
      30_000,
      () => `${JSON.stringify(sqliteOrders())}\n${cli.stderr().slice(-3000)}`,
    );
    const metrics = await cli.metrics();
    expect(metricValue(metrics, 'cdc_sync_conflicts_total', { stream: 'pos-to-cloud', table: 'orders' })).toBe(1);
    expect(metricValue(metrics, 'cdc_sync_conflicts_total', { stream: 'cloud-to-pos', table: 'public.orders' })).toBe(1);
    expect(await processes.stop(cli)).toBe(0);
  });

  it('ends equal when a delete races an update of the same row under newer-wins by updated_at: the later of the two wins on both sides', async () => {
    // A delete has no updated_at: a change that meets one is judged by change time (judgedByChangeTime), 20 ms apart here.
    const pause = () => new Promise((r) => setTimeout(r, 20));
    sqlite.prepare(`DELETE FROM orders WHERE id = 'ord_003'`).run();
    await pause();
    await pg.query(`UPDATE orders SET qty = 33, updated_at = '2030-07-01T00:00:00Z' WHERE id = 'ord_003'`);
    await pause();
    await pg.query(`UPDATE orders SET qty = 101, updated_at = '2030-07-01T00:00:00Z' WHERE id = 'ord_101'`);
    await pause();
    sqlite.prepare(`DELETE FROM orders WHERE id = 'ord_101'`).run();
    const cli = start();
    await waitFor(
      async () => (await ordersEqual()) && sqliteOrders().find((o) => o.id === 'ord_003')?.qty === 33 && !sqliteOrders().some((o) => o.id === 'ord_101'),
      30_000,
      () => `${JSON.stringify(sqliteOrders())}\n${cli.stderr().slice(-3000)}`,
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(await ordersEqual()).toBe(true);
    expect(await processes.stop(cli)).toBe(0);
  });

  it("keeps timestamps the same instant both ways: SQLite's own notation locally, read as UTC in the cloud whatever its time zone", async () => {
    // Neither the cloud database's time zone nor the process's may move a zone-less SQLite timestamp.
    await pg.query(`ALTER DATABASE ${pg.name} SET timezone TO 'Asia/Tokyo'`);
    try {
      const cli = start({ TZ: 'America/New_York' });
      await pg.query(`INSERT INTO shifts VALUES ('shift_301', 'di', '2030-03-01T10:00:00.5+02:00')`);
      await pg.query(`INSERT INTO orders (id, shift_id, qty, price, updated_at) VALUES ('ord_301', 'shift_301', 1, 1, '2030-03-01T09:00:00Z')`);
      await waitFor(() => sqliteCount(`SELECT count(*) AS n FROM orders WHERE id = 'ord_301'`) === 1, 30_000, () => cli.stderr().slice(-3000));
      expect(sqlite.prepare(`SELECT updated_at FROM shifts WHERE id = 'shift_301'`).get()).toEqual({ updated_at: '2030-03-01 08:00:00.500' });
      const inHour = `SELECT id FROM orders WHERE updated_at BETWEEN datetime('2030-03-01 09:00:00') AND datetime('2030-03-01 09:00:00', '+1 hour') ORDER BY id`;
      expect(sqlite.prepare(inHour).all()).toEqual([{ id: 'ord_301' }]);

      // A local edit carries the stored text back: the same instant, so the cloud's newer-wins lets it through.
      sqlite.prepare(`UPDATE orders SET qty = 5 WHERE id = 'ord_301'`).run();
      // An application writing with datetime(), which is UTC by SQLite's definition.
      sqlite.prepare(`INSERT INTO orders VALUES ('ord_302', 'shift_301', 2, 1, NULL, NULL, datetime('2030-03-01 09:30:00'))`).run();
      const cloud = () =>
        pg.query<{ id: string; qty: number; utc: string }>(
          `SELECT id, qty, (updated_at AT TIME ZONE 'UTC')::text AS utc FROM orders WHERE id IN ('ord_301', 'ord_302') ORDER BY id`,
        );
      let seen: { id: string; qty: number; utc: string }[] = [];
      const arrived = async () => (seen = await cloud()).map((r) => r.qty).join() === '5,2';
      await waitFor(arrived, 30_000, () => `${JSON.stringify(seen)}\n${cli.stderr().slice(-3000)}`);
      expect(seen).toEqual([
        { id: 'ord_301', qty: 5, utc: '2030-03-01 09:00:00' },
        { id: 'ord_302', qty: 2, utc: '2030-03-01 09:30:00' },
      ]);
      const metrics = await cli.metrics();
      expect(metricValue(metrics, 'cdc_sync_conflicts_total', { stream: 'pos-to-cloud', table: 'orders' }) ?? 0).toBe(0);
      expect(sqlite.prepare(inHour).all()).toEqual([{ id: 'ord_301' }, { id: 'ord_302' }]);
      expect(await processes.stop(cli)).toBe(0);
    } finally {
      await pg.query(`ALTER DATABASE ${pg.name} RESET timezone`);
    }
  });

  it('a key change moves the row both ways: the old key is deleted on the target (PostgreSQL sink, SQLite sink)', async () => {
    const cli = start();
    sqlite.prepare(`INSERT INTO shifts VALUES ('shift_401', 'di', NULL, '2030-03-01T00:00:00Z')`).run();
    sqlite.prepare(`INSERT INTO orders VALUES ('ord_401', 'shift_401', 1, 1, NULL, NULL, '2030-03-01T00:00:00Z')`).run();
    await pg.query(`INSERT INTO shifts VALUES ('shift_501', 'ed', '2030-03-01T00:00:00Z')`);
    await pg.query(`INSERT INTO orders (id, shift_id, qty, price, updated_at) VALUES ('ord_501', 'shift_501', 3, 3, '2030-03-01T00:00:00Z')`);
    const ids = () => sqliteOrders().map((o) => o.id);
    await waitFor(async () => ids().includes('ord_501') && (await ordersEqual()), 30_000, () => cli.stderr().slice(-3000));
    sqlite.prepare(`UPDATE orders SET id = id || '_moved' WHERE id = 'ord_401'`).run();
    await pg.query(`UPDATE orders SET id = id || '_moved' WHERE id = 'ord_501'`);
    await waitFor(async () => ids().includes('ord_501_moved') && (await ordersEqual()), 30_000, () => `${JSON.stringify(sqliteOrders())}\n${cli.stderr().slice(-3000)}`);
    expect((await pgOrders()).map((o) => o.id)).toEqual(expect.arrayContaining(['ord_401_moved', 'ord_501_moved']));
    expect((await pgOrders()).map((o) => o.id)).not.toContain('ord_401');
    expect(ids()).not.toContain('ord_501');
    expect(await pg.query(`SELECT shift_id, qty FROM orders WHERE id = 'ord_401_moved'`)).toEqual([{ shift_id: 'shift_401', qty: 1 }]);
    expect(sqlite.prepare(`SELECT shift_id, qty FROM orders WHERE id = 'ord_501_moved'`).get()).toEqual({ shift_id: 'shift_501', qty: 3 });
    expect(await processes.stop(cli)).toBe(0);
  });
});

describe('SQLite table names', () => {
  it('match case-insensitively, as SQLite does: `invoices` in the configuration is the table Invoices, as source and as target', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'cdc-sync-case-')), 'shop.db');
    const db = new Database(path);
    db.exec(`CREATE TABLE Invoices (Id INTEGER PRIMARY KEY, Total NUMERIC NOT NULL); INSERT INTO Invoices VALUES (1, 10), (2, 20)`);
    db.close();
    await pg.query(`CREATE TABLE invoices (id int PRIMARY KEY, total numeric NOT NULL)`);
    const both = writeConfig(`
streams:
  - name: shop-to-cloud
    source: { type: sqlite-changelog, url: "sqlite:${path}" }
    sink: { type: postgres, url: "${pg.url}" }
    tables: [{ source: invoices, target: public.invoices }]
  - name: cloud-to-shop
    direction: reverse
    source: { type: postgres-changelog, url: "${pg.url}" }
    sink: { type: sqlite, url: "sqlite:${path}" }
    tables: [{ source: public.invoices, target: INVOICES }]
http: { port: 0, host: 127.0.0.1 }
`);
    const init = await runCliToEnd(['init-sql', '--config', both, '--target', 'sqlite']);
    expect(init.code, init.stderr).toBe(0);
    const local = new Database(path);
    local.exec(init.stdout);
    local.close();
    await pg.query((await runCliToEnd(['init-sql', '--config', both, '--target', 'postgres'])).stdout);
    const checked = await runCliToEnd(['validate', '--config', both]);
    expect(checked.code, checked.stderr).toBe(0);
    const once = await runCliToEnd(['run', '--once', '--config', both]);
    expect(once.code, once.stderr).toBe(0);
    expect(await pg.query(`SELECT id, total::int AS total FROM invoices ORDER BY id`)).toEqual([
      { id: 1, total: 10 },
      { id: 2, total: 20 },
    ]);
  });
});

describe('a target left out of the configuration', () => {
  it('is the sink\'s table named like the source\'s ignoring case and underscores (InvoiceLine ↔ invoice_line), both ways, and the choice is logged', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'cdc-sync-target-')), 'shop.db');
    const db = new Database(path);
    db.exec(`CREATE TABLE InvoiceLine (Id INTEGER PRIMARY KEY, Qty INTEGER NOT NULL); INSERT INTO InvoiceLine VALUES (1, 3)`);
    db.close();
    await pg.query(`CREATE TABLE invoice_line (id int PRIMARY KEY, qty int NOT NULL); INSERT INTO invoice_line VALUES (2, 5)`);
    const both = writeConfig(`
streams:
  - name: lines-to-cloud
    source: { type: sqlite-changelog, url: "sqlite:${path}" }
    sink: { type: postgres, url: "${pg.url}" }
    tables: [{ source: InvoiceLine }]
  - name: cloud-to-lines
    direction: reverse
    source: { type: postgres-changelog, url: "${pg.url}" }
    sink: { type: sqlite, url: "sqlite:${path}" }
    tables: [{ source: public.invoice_line }]
http: { port: 0, host: 127.0.0.1 }
`);
    const local = new Database(path);
    local.exec((await runCliToEnd(['init-sql', '--config', both, '--target', 'sqlite'])).stdout);
    local.close();
    await pg.query((await runCliToEnd(['init-sql', '--config', both, '--target', 'postgres'])).stdout);
    const once = await runCliToEnd(['run', '--once', '--config', both]);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stderr).toMatch(/"table":"InvoiceLine","target":"public.invoice_line".*tables\[0\]\.target left out/);
    expect(once.stderr).toMatch(/"table":"public.invoice_line","target":"InvoiceLine"/);
    expect(await pg.query(`SELECT id, qty FROM invoice_line ORDER BY id`)).toEqual([
      { id: 1, qty: 3 },
      { id: 2, qty: 5 },
    ]);
    const after = new Database(path);
    expect(after.prepare(`SELECT Id, Qty FROM InvoiceLine ORDER BY Id`).all()).toEqual([
      { Id: 1, Qty: 3 },
      { Id: 2, Qty: 5 },
    ]);
    after.close();

    // Two tables named alike: the target must be named.
    await pg.query(`CREATE SCHEMA IF NOT EXISTS billing; CREATE TABLE billing.invoiceline (id int PRIMARY KEY)`);
    const twice = await runCliToEnd(['validate', '--config', both]);
    expect(twice.code, twice.stderr).toBe(2);
    expect(twice.stderr).toMatch(/streams\[0\]\.tables\[0\]\.target: several tables of the sink database are named like InvoiceLine \(.*\); name the target table/);
    expect(twice.stderr).toContain('billing.invoiceline');
  });
});
