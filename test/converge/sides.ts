import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase, type PgServer, type TestDatabase } from '../support/test-database.js';
import { changelogSetupSql } from '../../src/cdc/postgres/changelog-setup.js';
import type { Edit, ParentValues } from './history.js';

/** A row as both kinds of database are compared: ids relative to the case, values in one form. */
export type Snapshot = Record<string, Record<string, unknown>>;

/** A change the application made, as the side's own change log recorded it (for the expected outcome). */
export interface UserChange {
  table: 'parent' | 'child';
  /** Ids relative to the case; null when the image is absent. */
  before: number | null;
  after: number | null;
  image: Record<string, unknown> | null;
  /** Capture time in whole milliseconds (what the conflict rule compares). */
  time: number;
  /** Order within the side. */
  seq: number;
}

export interface Side {
  readonly label: string;
  /** The `source:` and `sink:` YAML of this side. */
  source(): string;
  sink(): string;
  /** Applies the edits as one transaction; returns the rows they touched. */
  apply(edits: Edit[], base: number): Promise<number>;
  snapshot(base: number): Promise<Snapshot>;
  userChanges(base: number): Promise<UserChange[]>;
  /** Row writes of any writer (the application's and cdc-sync's) in the case's key range. */
  writes(base: number): Promise<number>;
  deadLetters(): Promise<number>;
  conflicts(): Promise<number>;
  /** Runs `init-sql`'s script for this side. */
  setUp(script: string): Promise<void>;
  /** After its database server restarted: connect again. */
  reconnect?(): Promise<void>;
  close(): Promise<void>;
}

const SPAN = 1000;

function parentRow(id: number, name: unknown, qty: unknown, at: unknown, flag: unknown, data: unknown): Record<string, unknown> {
  return {
    id,
    name: name ?? null,
    qty: qty === null || qty === undefined ? null : Number(qty),
    at: at === null || at === undefined ? null : instant(at),
    flag: flag === null || flag === undefined ? null : Boolean(flag),
    data: data === null || data === undefined ? null : hex(data),
  };
}

/** A timestamp in any of the forms the two databases and the row images use, as epoch milliseconds. */
function instant(value: unknown): number {
  if (value instanceof Date) return value.getTime();
  const text = String(value).trim().replace(' ', 'T');
  return Date.parse(/(Z|[+-]\d\d(:?\d\d)?)$/.test(text) ? text : `${text}Z`);
}

function hex(value: unknown): string {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  const text = String(value);
  return text.startsWith('\\x') ? text.slice(2) : text;
}

function relative(row: Record<string, unknown>, base: number): Record<string, unknown> {
  return 'parent_id' in row
    ? { id: Number(row.id) - base, parent_id: Number(row.parent_id) - base, note: row.note ?? null }
    : parentRow(Number(row.id) - base, row.name, row.qty, row.at, row.flag, row.data);
}

function snapshotOf(parents: Record<string, unknown>[], children: Record<string, unknown>[], base: number): Snapshot {
  const out: Snapshot = {};
  for (const row of parents) out[`parent ${Number(row.id) - base}`] = relative(row, base);
  for (const row of children) out[`child ${Number(row.id) - base}`] = relative(row, base);
  return out;
}

function imageChange(table: string, rowData: string | null, oldData: string | null, time: number, seq: number, base: number): UserChange {
  const after = rowData === null ? null : (JSON.parse(rowData) as Record<string, unknown>);
  const before = oldData === null ? null : (JSON.parse(oldData) as Record<string, unknown>);
  return {
    table: table.endsWith('child') ? 'child' : 'parent',
    before: before ? Number(before.id) - base : null,
    after: after ? Number(after.id) - base : null,
    image: after ? relative(after, base) : null,
    time,
    seq,
  };
}

const PG_SCHEMA = `
CREATE TABLE parent (id int PRIMARY KEY, name text, qty bigint, at timestamp(3), flag boolean, data bytea);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY IMMEDIATE, note text);
-- Every row write, whoever makes it: the measure of echoes and write storms.
CREATE TABLE write_log (n bigint GENERATED ALWAYS AS IDENTITY, tbl text, id int);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO write_log (tbl, id) VALUES (TG_TABLE_NAME, coalesce(NEW.id, OLD.id)); RETURN NULL; END $$;
CREATE TRIGGER log_write AFTER INSERT OR UPDATE OR DELETE ON parent FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_write AFTER INSERT OR UPDATE OR DELETE ON child FOR EACH ROW EXECUTE FUNCTION log_write();`;

const PG_AT = `(timestamp '1970-01-01' + $4::bigint * interval '1 millisecond')`;

export class PostgresSide implements Side {
  private constructor(
    readonly label: string,
    private readonly db: TestDatabase,
    private client: pg.Client,
    private readonly wal: boolean,
  ) {}

  /**
   * `wal`: the stream reads this side's WAL (postgres-wal); the change-log
   * triggers are set up anyway, only as the record of the application's
   * edits the expected outcome is worked out from.
   */
  static async create(label: string, options: { wal?: boolean; server?: PgServer } = {}): Promise<PostgresSide> {
    const db = await createTestDatabase(`converge_${label}`, options.server);
    await db.query(PG_SCHEMA);
    if (options.wal) await db.query(changelogSetupSql(['public.parent', 'public.child']));
    return new PostgresSide(label, db, await connect(db.url), options.wal ?? false);
  }

  async reconnect(): Promise<void> {
    await this.client.end().catch(() => {});
    this.client = await connect(this.db.url);
  }

  source(): string {
    if (this.wal) return `{ type: postgres-wal, url: "${this.db.url}", slot: cdc_sync_${this.db.name}, publication: cdc_sync_${this.db.name} }`;
    return `{ type: postgres-changelog, url: "${this.db.url}", idleIntervalMs: 20 }`;
  }

  sink(): string {
    return `{ type: postgres, url: "${this.db.url}" }`;
  }

  async setUp(script: string): Promise<void> {
    await this.db.query(script);
  }

  async apply(edits: Edit[], base: number): Promise<number> {
    const q = async (sql: string, params: unknown[]) => (await this.client.query(sql, params)).rowCount ?? 0;
    let touched = 0;
    await this.client.query('BEGIN');
    try {
      for (const e of edits) touched += await this.edit(q, e, base);
      await this.client.query('COMMIT');
    } catch (error) {
      await this.client.query('ROLLBACK');
      throw error;
    }
    return touched;
  }

  private async edit(q: (sql: string, params: unknown[]) => Promise<number>, e: Edit, base: number): Promise<number> {
    switch (e.kind) {
      case 'upsert-parent': {
        const v: ParentValues = e.values;
        return q(
          `INSERT INTO parent (id, name, qty, at, flag, data) VALUES ($1, $2, $3, ${PG_AT}, $5, $6)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, qty = EXCLUDED.qty, at = EXCLUDED.at, flag = EXCLUDED.flag, data = EXCLUDED.data`,
          [base + e.id, v.name, v.qty, v.at, v.flag, v.data === null ? null : Buffer.from(v.data)],
        );
      }
      case 'update-parent':
        return q(`UPDATE parent SET name = $2, qty = $3 WHERE id = $1`, [base + e.id, e.name, e.qty]);
      case 'delete-parent':
        return q(`DELETE FROM parent WHERE id = $1`, [base + e.id]);
      case 'move-parent':
        if (e.from === e.to) return 0;
        return q(`UPDATE parent SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM parent WHERE id = $2)`, [base + e.from, base + e.to]);
      case 'family': {
        await q(`SET CONSTRAINTS ALL DEFERRED`, []);
        const children = await q(
          `INSERT INTO child (id, parent_id, note) SELECT c, $2, 'born' FROM unnest($1::int[]) AS c
           ON CONFLICT (id) DO UPDATE SET parent_id = EXCLUDED.parent_id, note = EXCLUDED.note`,
          [e.children.map((c) => base + c), base + e.parent],
        );
        const parent = await q(`INSERT INTO parent (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`, [base + e.parent, e.name]);
        await q(`SET CONSTRAINTS ALL IMMEDIATE`, []);
        return children + parent;
      }
      case 'update-child':
        return q(`UPDATE child SET note = $2, parent_id = $3 WHERE id = $1 AND EXISTS (SELECT 1 FROM parent WHERE id = $3)`, [
          base + e.id,
          e.note,
          base + e.parent,
        ]);
      case 'delete-child':
        return q(`DELETE FROM child WHERE id = $1`, [base + e.id]);
      case 'move-child':
        if (e.from === e.to) return 0;
        return q(`UPDATE child SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM child WHERE id = $2)`, [base + e.from, base + e.to]);
    }
  }

  async snapshot(base: number): Promise<Snapshot> {
    const range = [base, base + SPAN];
    const parents = await this.db.query<Record<string, unknown>>(
      `SELECT id, name, qty::text AS qty, to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS at, flag, data FROM parent WHERE id >= $1 AND id < $2`,
      range,
    );
    const children = await this.db.query<Record<string, unknown>>(`SELECT id, parent_id, note FROM child WHERE id >= $1 AND id < $2`, range);
    return snapshotOf(parents, children, base);
  }

  async userChanges(base: number): Promise<UserChange[]> {
    // A one-way target captures nothing: it has no change log.
    const [log] = await this.db.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.changes') IS NOT NULL AS ok`);
    if (!log!.ok) return [];
    const rows = await this.db.query<{ table_name: string; row_data: string | null; old_data: string | null; ms: string; id: string }>(
      `SELECT table_name, row_data, old_data, floor(extract(epoch FROM captured_at) * 1000)::bigint::text AS ms, id::text AS id
         FROM cdc_sync.changes WHERE origin IS DISTINCT FROM 'cdc-sync ping-back' ORDER BY id`,
    );
    return rows
      .map((r) => imageChange(r.table_name, r.row_data, r.old_data, Number(r.ms), Number(r.id), base))
      .filter((c) => inRange(c));
  }

  async writes(base: number): Promise<number> {
    const [row] = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM write_log WHERE id >= $1 AND id < $2`, [base, base + SPAN]);
    return Number(row!.n);
  }

  async deadLetters(): Promise<number> {
    // The sink makes the table when it opens, which may be after the process said it runs.
    const [row] = await this.db.query<{ n: string }>(`SELECT CASE WHEN to_regclass('cdc_sync.dead_letters') IS NULL THEN 0 ELSE (xpath('/row/n/text()', query_to_xml('SELECT count(*) AS n FROM cdc_sync.dead_letters', false, true, '')))[1]::text::int END AS n`);
    return Number(row!.n);
  }

  async conflicts(): Promise<number> {
    const [log] = await this.db.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.conflicts') IS NOT NULL AS ok`);
    if (!log!.ok) return 0;
    const [row] = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.conflicts`);
    return Number(row!.n);
  }

  async close(): Promise<void> {
    await this.client.end();
    // A replication slot keeps its database from being dropped.
    if (this.wal) await this.db.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`).catch(() => []);
    await this.db.drop();
  }
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  // A server restart (a fault step) ends the connection; the pair reconnects after it.
  client.on('error', () => {});
  await client.connect();
  return client;
}

function inRange(c: UserChange): boolean {
  const id = c.after ?? c.before;
  return id !== null && id >= 0 && id < SPAN;
}

const SQLITE_SCHEMA = `
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, at DATETIME, flag BOOLEAN, data BLOB);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED, note TEXT);
CREATE TABLE write_log (n INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, id INTEGER);
${['parent', 'child']
  .map(
    (t) => `CREATE TRIGGER log_${t}_i AFTER INSERT ON ${t} BEGIN INSERT INTO write_log (tbl, id) VALUES ('${t}', NEW.id); END;
CREATE TRIGGER log_${t}_u AFTER UPDATE ON ${t} BEGIN INSERT INTO write_log (tbl, id) VALUES ('${t}', NEW.id); END;
CREATE TRIGGER log_${t}_d AFTER DELETE ON ${t} BEGIN INSERT INTO write_log (tbl, id) VALUES ('${t}', OLD.id); END;`,
  )
  .join('\n')}`;

/** SQLite's canonical text for an instant (https://www.sqlite.org/lang_datefunc.html, "Time Values"). */
function sqliteTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

export class SqliteSide implements Side {
  private constructor(
    readonly label: string,
    private readonly path: string,
    private readonly db: Database.Database,
  ) {}

  static create(label: string): SqliteSide {
    const path = join(mkdtempSync(join(tmpdir(), 'cdc-sync-converge-')), `${label}.db`);
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 10000');
    db.exec(SQLITE_SCHEMA);
    return new SqliteSide(label, path, db);
  }

  source(): string {
    return `{ type: sqlite-changelog, url: "sqlite:${this.path}", idleIntervalMs: 20 }`;
  }

  sink(): string {
    return `{ type: sqlite, url: "sqlite:${this.path}" }`;
  }

  async setUp(script: string): Promise<void> {
    this.db.exec(script);
  }

  async apply(edits: Edit[], base: number): Promise<number> {
    const run = (sql: string, ...params: unknown[]) => this.db.prepare(sql).run(...params).changes;
    const transaction = this.db.transaction(() => edits.reduce((n, e) => n + this.edit(run, e, base), 0));
    return transaction.immediate();
  }

  private edit(run: (sql: string, ...params: unknown[]) => number, e: Edit, base: number): number {
    switch (e.kind) {
      case 'upsert-parent': {
        const v = e.values;
        return run(
          `INSERT INTO parent (id, name, qty, at, flag, data) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty, at = excluded.at, flag = excluded.flag, data = excluded.data`,
          base + e.id,
          v.name,
          v.qty,
          sqliteTime(v.at),
          v.flag === null ? null : v.flag ? 1 : 0,
          v.data === null ? null : Buffer.from(v.data),
        );
      }
      case 'update-parent':
        return run(`UPDATE parent SET name = ?, qty = ? WHERE id = ?`, e.name, e.qty, base + e.id);
      case 'delete-parent':
        return run(`DELETE FROM parent WHERE id = ?`, base + e.id);
      case 'move-parent':
        if (e.from === e.to) return 0;
        return run(`UPDATE parent SET id = ? WHERE id = ? AND NOT EXISTS (SELECT 1 FROM parent WHERE id = ?)`, base + e.to, base + e.from, base + e.to);
      case 'family': {
        let n = 0;
        for (const c of e.children) {
          n += run(
            `INSERT INTO child (id, parent_id, note) VALUES (?, ?, 'born') ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, note = excluded.note`,
            base + c,
            base + e.parent,
          );
        }
        return n + run(`INSERT INTO parent (id, name) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name`, base + e.parent, e.name);
      }
      case 'update-child':
        return run(`UPDATE child SET note = ?, parent_id = ? WHERE id = ? AND EXISTS (SELECT 1 FROM parent WHERE id = ?)`, e.note, base + e.parent, base + e.id, base + e.parent);
      case 'delete-child':
        return run(`DELETE FROM child WHERE id = ?`, base + e.id);
      case 'move-child':
        if (e.from === e.to) return 0;
        return run(`UPDATE child SET id = ? WHERE id = ? AND NOT EXISTS (SELECT 1 FROM child WHERE id = ?)`, base + e.to, base + e.from, base + e.to);
    }
  }

  async snapshot(base: number): Promise<Snapshot> {
    const parents = this.db.prepare(`SELECT id, name, qty, at, flag, data FROM parent WHERE id >= ? AND id < ?`).all(base, base + SPAN) as Record<string, unknown>[];
    const children = this.db.prepare(`SELECT id, parent_id, note FROM child WHERE id >= ? AND id < ?`).all(base, base + SPAN) as Record<string, unknown>[];
    return snapshotOf(parents, children, base);
  }

  async userChanges(base: number): Promise<UserChange[]> {
    const rows = this.db
      .prepare(`SELECT id, table_name, row_data, old_data, captured_at FROM cdc_sync_changes WHERE origin IS NOT 'cdc-sync ping-back' ORDER BY id`)
      .all() as { id: number; table_name: string; row_data: string | null; old_data: string | null; captured_at: string }[];
    return rows.map((r) => imageChange(r.table_name, r.row_data, r.old_data, instant(r.captured_at), r.id, base)).filter(inRange);
  }

  async writes(base: number): Promise<number> {
    return (this.db.prepare(`SELECT count(*) AS n FROM write_log WHERE id >= ? AND id < ?`).get(base, base + SPAN) as { n: number }).n;
  }

  async deadLetters(): Promise<number> {
    if (!this.db.prepare(`SELECT 1 FROM sqlite_schema WHERE name = 'cdc_sync_dead_letters'`).get()) return 0;
    return (this.db.prepare(`SELECT count(*) AS n FROM cdc_sync_dead_letters`).get() as { n: number }).n;
  }

  async conflicts(): Promise<number> {
    return (this.db.prepare(`SELECT count(*) AS n FROM cdc_sync_conflicts`).get() as { n: number }).n;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
