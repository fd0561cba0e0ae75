import { ConfigError } from '../../core/errors.js';
import { quoteIdent, quoteLiteral, sqliteTableName, tableColumns, type SqliteDatabase } from './connection.js';

/**
 * Set-up for the `sqlite-changelog` source: one change table, the origin
 * marker table, and three triggers per captured table. Idempotent: safe to
 * run again after adding a table or a column (the triggers list the table's
 * columns as they are when the script is generated, so run `init-sql` again
 * after a schema change).
 *
 * `id` is AUTOINCREMENT so that an id is never reused, even after the log is
 * pruned: the reader's checkpoint is an id, and a reused id at or below it
 * would be skipped. SQLite has one writer at a time, so ids are handed out in
 * commit order and a reader never sees id n+1 committed before id n: the id
 * alone is a safe position (PostgreSQL's change log needs snapshots for that).
 *
 * SQLite has no session settings, so cdc-sync's own writes are marked with a
 * row in `cdc_sync_origin`: the sink inserts it as the first statement of its
 * transaction and deletes it again before COMMIT. Only one transaction can
 * write at a time, so while the marker exists every write is the sink's, and
 * once committed the marker is gone again: no other writer ever sees it. The
 * triggers capture a row only when `(SELECT origin FROM cdc_sync_origin) IS NULL`.
 */
export const SQLITE_CHANGELOG_SCHEMA_SQL = `-- cdc-sync change log (sqlite-changelog source)
CREATE TABLE IF NOT EXISTS cdc_sync_changes (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  table_name  TEXT NOT NULL,
  op          TEXT NOT NULL CHECK (op IN ('I', 'U', 'D')),
  row_data    TEXT,            -- after-image as JSON text (null for deletes)
  old_data    TEXT,            -- before-image as JSON text (null for inserts)
  origin      TEXT,            -- null for the application's writes
  captured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- Holds one row only inside cdc-sync's own write transactions: rows written then are not captured.
CREATE TABLE IF NOT EXISTS cdc_sync_origin (origin TEXT);
-- How far each stream reading this log has checkpointed: changes every reader has
-- applied are pruned after source.retentionHours. Delete the row of a stream you remove.
CREATE TABLE IF NOT EXISTS cdc_sync_readers (
  stream     TEXT PRIMARY KEY,
  after_id   INTEGER NOT NULL,
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
`;

/** Names of the three capture triggers of a table. */
export function captureTriggerNames(table: string): { insert: string; update: string; delete: string } {
  return { insert: `cdc_sync_${table}_insert`, update: `cdc_sync_${table}_update`, delete: `cdc_sync_${table}_delete` };
}

/**
 * A row as a JSON object text: `json_object('a', t."a", …)`. Blobs, which JSON
 * cannot hold, become `\x`-hex text (decoded again by the sinks' binary conversion).
 */
export function rowImageSql(alias: string, columns: string[]): string {
  const parts = columns.map((c) => {
    const ref = `${alias}.${quoteIdent(c)}`;
    return `${quoteLiteral(c)}, CASE WHEN typeof(${ref}) = 'blob' THEN '\\x' || lower(hex(${ref})) ELSE ${ref} END`;
  });
  return `json_object(${parts.join(', ')})`;
}

const NOT_OURS = `(SELECT origin FROM cdc_sync_origin) IS NULL`;

/**
 * The three triggers of one table. `columns` are all columns (generated ones
 * included in the images); `compared` those an update must change to be
 * captured: an update that sets every column to its old value is not a change.
 */
export function sqliteTriggerSql(table: string, columns: string[], compared: string[]): string {
  const t = quoteIdent(table);
  const name = quoteLiteral(table);
  const names = captureTriggerNames(table);
  const changed = compared.length > 0 ? ` AND (${compared.map((c) => `OLD.${quoteIdent(c)} IS NOT NEW.${quoteIdent(c)}`).join(' OR ')})` : '';
  return `DROP TRIGGER IF EXISTS ${quoteIdent(names.insert)};
CREATE TRIGGER ${quoteIdent(names.insert)} AFTER INSERT ON ${t}
WHEN ${NOT_OURS}
BEGIN
  INSERT INTO cdc_sync_changes (table_name, op, row_data) VALUES (${name}, 'I', ${rowImageSql('NEW', columns)});
END;
DROP TRIGGER IF EXISTS ${quoteIdent(names.update)};
CREATE TRIGGER ${quoteIdent(names.update)} AFTER UPDATE ON ${t}
WHEN ${NOT_OURS}${changed}
BEGIN
  INSERT INTO cdc_sync_changes (table_name, op, row_data, old_data) VALUES (${name}, 'U', ${rowImageSql('NEW', columns)}, ${rowImageSql('OLD', columns)});
END;
DROP TRIGGER IF EXISTS ${quoteIdent(names.delete)};
CREATE TRIGGER ${quoteIdent(names.delete)} AFTER DELETE ON ${t}
WHEN ${NOT_OURS}
BEGIN
  INSERT INTO cdc_sync_changes (table_name, op, old_data) VALUES (${name}, 'D', ${rowImageSql('OLD', columns)});
END;
`;
}

/** The whole set-up for `tables` (configured names), columns read from the database now. */
export function sqliteChangelogSetupSql(db: SqliteDatabase, tables: string[]): string {
  const parts = [SQLITE_CHANGELOG_SCHEMA_SQL];
  for (const configured of tables) {
    const table = sqliteTableName(configured);
    const columns = tableColumns(db, table);
    if (!columns) throw new ConfigError(`SQLite table ${configured} does not exist`);
    const visible = columns.filter((c) => c.hidden !== 1);
    parts.push(sqliteTriggerSql(table, visible.map((c) => c.name), visible.filter((c) => c.hidden === 0).map((c) => c.name)));
  }
  return parts.join('\n');
}

/** Applies the set-up (tests, the embedded demo); operators review and apply `init-sql` output. */
export function applySqliteChangelogSetup(db: SqliteDatabase, tables: string[]): void {
  db.exec(sqliteChangelogSetupSql(db, tables));
}
