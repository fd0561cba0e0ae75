import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { ConfigError } from '../../core/errors.js';
import { parseQualifiedName } from '../../core/names.js';

export type SqliteDatabase = Database.Database;

/**
 * The file a `sqlite` URL names: `sqlite:///abs/path.db`, `sqlite:./rel.db`,
 * `file:./rel.db` or a plain path.
 */
export function sqlitePath(url: string): string {
  const stripped = url.replace(/^sqlite:(\/\/)?/, '').replace(/^file:(\/\/)?/, '');
  if (stripped === '') throw new ConfigError(`not a SQLite database URL: ${JSON.stringify(url)}`);
  return stripped;
}

/**
 * Opens a SQLite database (created when missing, unless `mustExist`: the
 * source and sink never create one) the way both the source and the sink use it: WAL (readers never block the application's writer, and the
 * application never blocks our reads), a short busy timeout (SQLITE_BUSY
 * then comes back as a transient error, retried with backoff instead of
 * blocking the event loop for long), and foreign keys enforced, which SQLite
 * leaves off per connection unless asked.
 */
export function openSqlite(url: string, what: string, options: { readonly?: boolean; mustExist?: boolean } = {}): SqliteDatabase {
  const path = sqlitePath(url);
  const mustExist = (options.mustExist ?? false) || (options.readonly ?? false);
  if (mustExist && path !== ':memory:' && !existsSync(path)) throw new ConfigError(`${what}: SQLite database ${path} does not exist`);
  const db = new Database(path, { fileMustExist: mustExist && path !== ':memory:', readonly: options.readonly ?? false });
  db.pragma('busy_timeout = 2000');
  if (options.readonly) return db;
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  return db;
}

/** SQLite quoting: double the quote character, wrap in quotes. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal (for generated trigger text; values at run time are always bound). */
export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * The table's name inside its SQLite file: `main.orders` and `orders` are the
 * same table; other schemas (ATTACHed databases) are not supported.
 */
export function sqliteTableName(table: string): string {
  const name = parseQualifiedName(table);
  if (name.schema !== undefined && name.schema !== 'main') {
    throw new ConfigError(`SQLite table ${table}: only tables of the main database can be synced (name it "${name.name}" or "main.${name.name}")`);
  }
  return name.name;
}

export interface SqliteColumnInfo {
  name: string;
  type: string;
  pk: number;
  /** table_xinfo `hidden`: 0 normal, 1 hidden (virtual tables), 2 virtual generated, 3 stored generated. */
  hidden: number;
}

/** Columns of a table, generated ones included, or null when the table does not exist. */
export function tableColumns(db: SqliteDatabase, table: string): SqliteColumnInfo[] | null {
  // SQLite matches table names case-insensitively (`invoices` finds `Invoices`): so does this check.
  const exists = db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE`).get(table);
  if (!exists) return null;
  return db.prepare(`SELECT name, type, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid`).all(table) as SqliteColumnInfo[];
}
