import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Edit } from './history.js';
import { imageChange, inRange, instant, snapshotOf, SPAN, stepApart, type Side, type Snapshot, type UserChange, type Write } from './sides.js';

const SQLITE_SCHEMA = `
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, at DATETIME, flag BOOLEAN, data BLOB, doc TEXT);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED, note TEXT);
CREATE TABLE write_log (n INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, id INTEGER, detail TEXT);
-- cdc-sync's change-log set-up makes it too; the write log's triggers name it, so it exists first.
CREATE TABLE IF NOT EXISTS cdc_sync_origin (origin TEXT);
${['parent', 'child']
  .map((t) => {
    const image = (row: string) => (t === 'parent' ? `json_object('name', ${row}.name, 'qty', ${row}.qty, 'at', ${row}.at, 'flag', ${row}.flag, 'data', quote(${row}.data), 'doc', ${row}.doc)` : `json_object('parent_id', ${row}.parent_id, 'note', ${row}.note)`);
    const detail = (op: string, row: string) => `'${op} by ' || coalesce((SELECT origin FROM cdc_sync_origin), 'the application') || ' row ' || ${image(row)}`;
    return `CREATE TRIGGER log_${t}_i AFTER INSERT ON ${t} BEGIN INSERT INTO write_log (tbl, id, detail) VALUES ('${t}', NEW.id, ${detail('INSERT', 'NEW')}); END;
CREATE TRIGGER log_${t}_u AFTER UPDATE ON ${t} BEGIN INSERT INTO write_log (tbl, id, detail) VALUES ('${t}', NEW.id, ${detail('UPDATE', 'NEW')}); END;
CREATE TRIGGER log_${t}_d AFTER DELETE ON ${t} BEGIN INSERT INTO write_log (tbl, id, detail) VALUES ('${t}', OLD.id, ${detail('DELETE', 'OLD')}); END;`;
  })
  .join('\n')}`;

/** SQLite's canonical text for an instant (https://www.sqlite.org/lang_datefunc.html, "Time Values"). */
function sqliteTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

/**
 * For pairs under `conflict: newer-wins` with `updatedAt: updated_at`: every application write sets the column to
 * the time of the write (SQLite's trigger cannot change the row being written, so the statements do). New rows take
 * the default. cdc-sync's writes carry the time they bring. Declared DATETIME, so the sqlite sink compares it by
 * instant (src/sinks/sqlite/queries.ts, differsSql): declared TEXT, an unchanged row copied back from PostgreSQL read
 * as changed (`…Z` against the sink's `… …`) and was written once more (not captured: no echo, but one write more than
 * the checker allows).
 */
const UPDATED_AT_SCHEMA = `
ALTER TABLE parent ADD COLUMN updated_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'));
ALTER TABLE child ADD COLUMN updated_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'));`;
const TOUCH = `, updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')`;

export class SqliteSide implements Side {
  private constructor(
    readonly label: string,
    private readonly path: string,
    private readonly db: Database.Database,
    /** The application keeps updated_at (UPDATED_AT_SCHEMA): this is added to every SET. */
    private readonly touch = '',
  ) {}

  static create(label: string, options: { updatedAt?: boolean } = {}): SqliteSide {
    const path = join(mkdtempSync(join(tmpdir(), 'cdc-sync-converge-')), `${label}.db`);
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 10000');
    db.exec(SQLITE_SCHEMA);
    if (options.updatedAt) db.exec(UPDATED_AT_SCHEMA);
    return new SqliteSide(label, path, db, options.updatedAt ? TOUCH : '');
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
    const touched = transaction.immediate();
    if (this.touch) await stepApart();
    return touched;
  }

  async applyUntracked(edits: Edit[], base: number): Promise<number> {
    const run = (sql: string, ...params: unknown[]) => this.db.prepare(sql).run(...params).changes;
    // The capture triggers skip writes while cdc_sync_origin holds a row (db/sqlite/changelog-setup.ts), as for cdc-sync's own.
    const transaction = this.db.transaction(() => {
      run(`INSERT INTO cdc_sync_origin (origin) VALUES ('existing rows')`);
      const n = edits.reduce((sum, e) => sum + this.edit(run, e, base), 0);
      run(`DELETE FROM cdc_sync_origin`);
      return n;
    });
    return transaction.immediate();
  }

  private edit(run: (sql: string, ...params: unknown[]) => number, e: Edit, base: number): number {
    switch (e.kind) {
      case 'upsert-parent': {
        const v = e.values;
        return run(
          `INSERT INTO parent (id, name, qty, at, flag, data, doc) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty, at = excluded.at, flag = excluded.flag, data = excluded.data, doc = excluded.doc${this.touch}`,
          base + e.id,
          v.name,
          v.qty,
          sqliteTime(v.at),
          v.flag === null ? null : v.flag ? 1 : 0,
          v.data === null ? null : Buffer.from(v.data),
          v.doc,
        );
      }
      case 'update-parent':
        return run(`UPDATE parent SET name = ?, qty = ?${this.touch} WHERE id = ?`, e.name, e.qty, base + e.id);
      case 'delete-parent':
        return run(`DELETE FROM parent WHERE id = ?`, base + e.id);
      case 'move-parent':
        if (e.from === e.to) return 0;
        return run(`UPDATE parent SET id = ?${this.touch} WHERE id = ? AND NOT EXISTS (SELECT 1 FROM parent WHERE id = ?)`, base + e.to, base + e.from, base + e.to);
      case 'family': {
        let n = 0;
        for (const c of e.children) {
          n += run(
            `INSERT INTO child (id, parent_id, note) VALUES (?, ?, 'born') ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, note = excluded.note${this.touch}`,
            base + c,
            base + e.parent,
          );
        }
        return n + run(`INSERT INTO parent (id, name) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name${this.touch}`, base + e.parent, e.name);
      }
      case 'update-child':
        return run(`UPDATE child SET note = ?, parent_id = ?${this.touch} WHERE id = ? AND EXISTS (SELECT 1 FROM parent WHERE id = ?)`, e.note, base + e.parent, base + e.id, base + e.parent);
      case 'delete-child':
        return run(`DELETE FROM child WHERE id = ?`, base + e.id);
      case 'move-child':
        if (e.from === e.to) return 0;
        return run(`UPDATE child SET id = ?${this.touch} WHERE id = ? AND NOT EXISTS (SELECT 1 FROM child WHERE id = ?)`, base + e.to, base + e.from, base + e.to);
    }
  }

  async snapshot(base: number): Promise<Snapshot> {
    const parents = this.db.prepare(`SELECT id, name, qty, at, flag, data, doc FROM parent WHERE id >= ? AND id < ?`).all(base, base + SPAN) as Record<string, unknown>[];
    const children = this.db.prepare(`SELECT id, parent_id, note FROM child WHERE id >= ? AND id < ?`).all(base, base + SPAN) as Record<string, unknown>[];
    return snapshotOf(parents, children, base);
  }

  async userChanges(base: number): Promise<UserChange[]> {
    const rows = this.db
      .prepare(`SELECT id, table_name, row_data, old_data, captured_at FROM cdc_sync_changes WHERE origin IS NOT 'cdc-sync ping-back' ORDER BY id`)
      .all() as { id: number; table_name: string; row_data: string | null; old_data: string | null; captured_at: string }[];
    return rows.map((r) => imageChange(r.table_name, r.row_data, r.old_data, instant(r.captured_at), r.id, base)).filter(inRange);
  }

  async writes(base: number): Promise<Write[]> {
    const rows = this.db.prepare(`SELECT tbl, id, detail FROM write_log WHERE id >= ? AND id < ? ORDER BY n`).all(base, base + SPAN) as { tbl: string; id: number; detail: string }[];
    return rows.map((r) => ({ row: `${r.tbl} ${r.id - base}`, detail: r.detail }));
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