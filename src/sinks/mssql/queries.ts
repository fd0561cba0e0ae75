import type { Query } from '../../db/mssql/client.js';
import { quote } from '../../db/mssql/identifiers.js';
import { literal } from '../../db/mssql/queue-setup.js';
import type { QualifiedName } from '../../core/names.js';

/**
 * T-SQL of the `mssql` sink. Rows travel as one JSON parameter per
 * statement and are typed by OPENJSON … WITH, using the target columns'
 * declared types, so strings, decimals, dates and GUIDs arrive exact and one
 * statement applies a whole table's share of a batch.
 */

export const TARGET_COLUMNS: Query = {
  name: 'sink.columns',
  sql: `SELECT c.name AS column_name, t.name AS column_type, c.max_length, c.precision, c.scale,
       CAST(c.is_identity AS bit) AS is_identity, CAST(c.is_computed AS bit) AS is_computed
  FROM sys.columns c JOIN sys.types t ON t.user_type_id = c.user_type_id
 WHERE c.object_id = OBJECT_ID(@table)
 ORDER BY c.column_id`,
};

export const TARGET_KEYS: Query = {
  name: 'sink.keys',
  sql: `SELECT i.index_id, CAST(i.is_primary_key AS bit) AS is_primary_key, c.name AS column_name
  FROM sys.indexes i
  JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id AND ic.is_included_column = 0
  JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
 WHERE i.object_id = OBJECT_ID(@table) AND (i.is_primary_key = 1 OR i.is_unique = 1) AND i.has_filter = 0
 ORDER BY i.index_id, ic.key_ordinal`,
};

/** The tables this one's foreign keys point at: a batch writes parents first (SQL Server checks each statement). */
export const TARGET_REFERENCES: Query = {
  name: 'sink.references',
  sql: `SELECT DISTINCT OBJECT_SCHEMA_NAME(fk.referenced_object_id) AS schema_name, OBJECT_NAME(fk.referenced_object_id) AS table_name
  FROM sys.foreign_keys fk
 WHERE fk.parent_object_id = OBJECT_ID(@table)`,
};

/** Bookkeeping of the sink, created at start when missing. */
export const SETUP: Query = {
  name: 'sink.setup',
  sql: `IF SCHEMA_ID(N'cdc_sync') IS NULL EXEC(N'CREATE SCHEMA cdc_sync');
IF OBJECT_ID(N'cdc_sync.checkpoints') IS NULL
  CREATE TABLE cdc_sync.checkpoints (stream nvarchar(128) NOT NULL PRIMARY KEY, position nvarchar(max) NOT NULL, updated_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME());
IF OBJECT_ID(N'cdc_sync.dead_letters') IS NULL
  CREATE TABLE cdc_sync.dead_letters (
    id bigint IDENTITY PRIMARY KEY, stream nvarchar(128) NOT NULL, table_name nvarchar(256) NOT NULL, [key] nvarchar(max) NULL,
    payload nvarchar(max) NOT NULL, error nvarchar(max) NOT NULL, reason nvarchar(50) NOT NULL, position nvarchar(max) NOT NULL,
    failed_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(), retried_at datetime2 NULL);
IF OBJECT_ID(N'cdc_sync.origin_marker') IS NULL
  CREATE TABLE cdc_sync.origin_marker (id int NOT NULL PRIMARY KEY, stream nvarchar(128) NOT NULL, written_at datetime2 NOT NULL);
-- Each conflict the sink resolved, with both rows and the winner (as SymmetricDS keeps them).
IF OBJECT_ID(N'cdc_sync.conflicts') IS NULL
  CREATE TABLE cdc_sync.conflicts (
    id bigint IDENTITY PRIMARY KEY, stream nvarchar(128) NOT NULL, table_name nvarchar(256) NOT NULL, [key] nvarchar(max) NULL,
    [rule] nvarchar(20) NOT NULL, incoming_op nvarchar(10) NOT NULL, incoming nvarchar(max) NULL, incoming_time datetime2 NULL,
    stored nvarchar(max) NULL, stored_time datetime2 NULL, winner nvarchar(10) NOT NULL, winning nvarchar(max) NULL,
    resolved_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME());`,
};

/**
 * Marks the session (queue triggers skip its writes) and the transaction
 * (a change of cdc_sync.origin_marker at the same LSN tells the CDC reader
 * to drop the whole transaction, when that table is CDC-enabled).
 */
export const MARK_ORIGIN: Query = {
  name: 'sink.mark-origin',
  sql: `EXEC sys.sp_set_session_context @key = N'cdc_sync.origin', @value = @stream;
UPDATE cdc_sync.origin_marker SET stream = @stream, written_at = SYSUTCDATETIME() WHERE id = 1;
IF @@ROWCOUNT = 0 INSERT INTO cdc_sync.origin_marker (id, stream, written_at) VALUES (1, @stream, SYSUTCDATETIME());`,
};

export interface MergeShape {
  table: QualifiedName;
  /** Column name → declared type, for OPENJSON … WITH. */
  columns: { name: string; type: string }[];
  key: string[];
  /** Columns an existing row may have changed (ownership); null: all. */
  updatable: string[] | null;
  newerWinsBy?: string | undefined;
  identityInsert: boolean;
  /** The target's IDENTITY column, when it has one. */
  identity?: string | undefined;
}

export function target(table: QualifiedName): string {
  return `${quote(table.schema ?? 'dbo')}.${quote(table.name)}`;
}

/**
 * How a target column travels through OPENJSON … WITH, and how it gets back
 * its own type:
 * - `datetime`/`smalldatetime` read a string with more than 3 fraction
 *   digits as Msg 241 ("Conversion failed when converting date and/or time
 *   from character string"; the datetime literal formats allow `.nnn` only,
 *   https://learn.microsoft.com/sql/t-sql/data-types/datetime-transact-sql),
 *   so they are read as datetime2(7) and converted (rounded as SQL Server
 *   rounds to its 1/300 s);
 * - `char`/`varchar`/`nchar`/`nvarchar(n)` are read as (max): OPENJSON
 *   converts like CAST, which cuts a longer string silently
 *   (https://learn.microsoft.com/sql/t-sql/functions/cast-and-convert-transact-sql,
 *   "Truncating and rounding results"); the INSERT/UPDATE of the real column
 *   then fails with 2628 instead and the row is dead-lettered, not cut.
 */
export function jsonColumn(column: { name: string; type: string }): { read: string; value: string } {
  const q = `j.${quote(column.name)}`;
  const base = column.type.toLowerCase().replace(/\(.*$/, '');
  if (base === 'datetime' || base === 'smalldatetime') return { read: 'datetime2(7)', value: `CONVERT(${base}, ${q})` };
  if (['char', 'varchar', 'nchar', 'nvarchar'].includes(base) && !/\(max\)$/i.test(column.type)) {
    return { read: `${base.startsWith('n') ? 'nvarchar' : 'varchar'}(max)`, value: q };
  }
  return { read: column.type, value: q };
}

/** '$."name"': a JSON path that reads any column name. */
function jsonPath(name: string): string {
  return literal(`$."${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
}

/**
 * (SELECT … FROM OPENJSON(@rows) WITH ([c] type '$."c"', …) AS j): every
 * column in its target type; JSON paths quoted so any column name works.
 */
export function typedRows(columns: { name: string; type: string }[], parameter = '@rows'): string {
  const read = columns.map((c) => ({ ...c, ...jsonColumn(c) }));
  return `(SELECT ${read.map((c) => `${c.value} AS ${quote(c.name)}`).join(', ')} FROM OPENJSON(${parameter}) WITH (${read.map((c) => `${quote(c.name)} ${c.read} ${jsonPath(c.name)}`).join(', ')}) AS j)`;
}

/**
 * One value of "has this row changed?". The comparison must see every edit
 * the application could make: a column's own collation (the default
 * SQL_Latin1_General_CP1_CI_AS) calls 'Ann' and 'ANN' equal, and '=' ignores
 * trailing spaces in any collation (https://learn.microsoft.com/sql/relational-databases/collations/collation-and-unicode-support;
 * ANSI padding, https://learn.microsoft.com/sql/t-sql/statements/set-ansi-padding-transact-sql),
 * so text compares in a binary collation and by length too. xml and the old
 * LOB types cannot be compared at all and compare as (n)varchar/varbinary(max).
 */
export function comparable(alias: string, column: { name: string; type: string }): string[] {
  const c = `${alias}.${quote(column.name)}`;
  const base = column.type.toLowerCase().replace(/\(.*$/, '');
  const BIN = 'COLLATE Latin1_General_BIN2';
  switch (base) {
    case 'char':
    case 'nchar':
      return [`${c} ${BIN}`]; // fixed width: trailing spaces are the padding itself
    case 'varchar':
    case 'nvarchar':
      return [`${c} ${BIN}`, `DATALENGTH(${c})`];
    case 'text':
      return [`CONVERT(varchar(max), ${c}) ${BIN}`, `DATALENGTH(${c})`];
    case 'ntext':
    case 'xml':
      return [`CONVERT(nvarchar(max), ${c}) ${BIN}`, `DATALENGTH(CONVERT(nvarchar(max), ${c}))`];
    case 'image':
      return [`CONVERT(varbinary(max), ${c})`];
    default:
      return [c];
  }
}

function differs(columns: { name: string; type: string }[]): string {
  return `EXISTS (SELECT ${columns.flatMap((c) => comparable('s', c)).join(', ')} EXCEPT SELECT ${columns.flatMap((c) => comparable('t', c)).join(', ')})`;
}

/**
 * SET IDENTITY_INSERT moves the IDENTITY counter up to an inserted value
 * above it ("If the value inserted is larger than the current identity value
 * for the table, SQL Server automatically uses the new inserted value as the
 * current identity value", https://learn.microsoft.com/sql/t-sql/statements/set-identity-insert-transact-sql):
 * the clinic's next own row would then take an id the portal also hands
 * out. Such a row stops the stream (error 50001, a configuration error)
 * before anything is written.
 */
function identityGuard(t: string, identity: string): string {
  const name = literal(t);
  return `IF EXISTS (SELECT 1 FROM OPENJSON(@rows) WITH (${quote(identity)} decimal(38,0) ${jsonPath(identity)}) AS j
            WHERE SIGN(IDENT_INCR(${name})) * (j.${quote(identity)} - IDENT_CURRENT(${name})) > 0)
  THROW ${IDENTITY_RANGE_ERROR}, N'identityInsert: an incoming ${identity.replace(/'/g, "''")} is beyond the IDENTITY value of ${t.replace(/'/g, "''")}; writing it would move the counter and the next local row would take an id the other side also uses. Give the other side ids below the current IDENTITY value (or reseed SQL Server above its range), or map the key to an alternate-key column instead (see README, "Into SQL Server").', 1;`;
}

/** THROW number of the identity guard; classified as a configuration error. */
export const IDENTITY_RANGE_ERROR = 50001;

/**
 * One MERGE per table and column set. `EXISTS (SELECT s.… EXCEPT SELECT t.…)`
 * is T-SQL's NULL-safe "differs": rows that would not change are not
 * written, so they make no CDC change and no trigger row (no echo).
 */
export function mergeSql(shape: MergeShape): Query {
  const t = target(shape.table);
  const updatable = shape.columns.filter((c) => !shape.key.includes(c.name) && (!shape.updatable || shape.updatable.includes(c.name)));
  const on = shape.key.map((k) => `t.${quote(k)} = s.${quote(k)}`).join(' AND ');
  const names = shape.columns.map((c) => quote(c.name));
  const lines = [`MERGE ${t} WITH (HOLDLOCK) AS t`, `USING ${typedRows(shape.columns)} AS s`, `ON ${on}`];
  if (updatable.length > 0) {
    const newer = shape.newerWinsBy ? ` AND (t.${quote(shape.newerWinsBy)} IS NULL OR s.${quote(shape.newerWinsBy)} >= t.${quote(shape.newerWinsBy)})` : '';
    lines.push(`WHEN MATCHED AND ${differs(updatable)}${newer} THEN UPDATE SET ${updatable.map((c) => `t.${quote(c.name)} = s.${quote(c.name)}`).join(', ')}`);
  }
  lines.push(`WHEN NOT MATCHED BY TARGET THEN INSERT (${names.join(', ')}) VALUES (${names.map((n) => `s.${n}`).join(', ')});`);
  let sql = `${lines.join('\n')}\nSELECT @@ROWCOUNT AS written;`;
  if (shape.identityInsert) {
    const guard = shape.identity && shape.columns.some((c) => c.name === shape.identity) ? `${identityGuard(t, shape.identity)}\n` : '';
    sql = `${guard}SET IDENTITY_INSERT ${t} ON;\n${sql}\nSET IDENTITY_INSERT ${t} OFF;`;
  }
  return { name: 'sink.merge', meta: { table: `${shape.table.schema ?? 'dbo'}.${shape.table.name}`, shape: JSON.stringify(shape) }, sql };
}

/** newer-wins losers: incoming rows older than a different stored row (counted and logged). */
export function conflictSql(shape: MergeShape & { newerWinsBy: string }): Query {
  const t = target(shape.table);
  const by = quote(shape.newerWinsBy);
  const compared = shape.columns.filter((c) => !shape.key.includes(c.name));
  return {
    name: 'sink.conflicts',
    meta: { table: `${shape.table.schema ?? 'dbo'}.${shape.table.name}`, shape: JSON.stringify(shape) },
    sql: `SELECT ${shape.key.map((k) => `s.${quote(k)}`).join(', ')}
  FROM ${typedRows(shape.columns)} AS s JOIN ${t} AS t ON ${shape.key.map((k) => `t.${quote(k)} = s.${quote(k)}`).join(' AND ')}
 WHERE t.${by} > s.${by} AND ${differs(compared)}`,
  };
}

export function deleteSql(table: QualifiedName, key: { name: string; type: string }[]): Query {
  const t = target(table);
  return {
    name: 'sink.delete',
    meta: { table: `${table.schema ?? 'dbo'}.${table.name}`, key: JSON.stringify(key.map((k) => k.name)) },
    sql: `DELETE t FROM ${t} AS t JOIN ${typedRows(key)} AS s ON ${key.map((k) => `t.${quote(k.name)} = s.${quote(k.name)}`).join(' AND ')};
SELECT @@ROWCOUNT AS written;`,
  };
}

export const INSERT_DEAD_LETTERS: Query = {
  name: 'sink.dead-letters',
  sql: `INSERT INTO cdc_sync.dead_letters (stream, table_name, [key], payload, error, reason, position)
SELECT stream, [table], [key], payload, error, reason, position
  FROM OPENJSON(@rows) WITH (stream nvarchar(128), [table] nvarchar(256), [key] nvarchar(max) AS JSON, payload nvarchar(max),
                             error nvarchar(max), reason nvarchar(50), position nvarchar(max))`,
};

export const SAVE_CHECKPOINT: Query = {
  name: 'sink.save-checkpoint',
  sql: `UPDATE cdc_sync.checkpoints SET position = @position, updated_at = SYSUTCDATETIME() WHERE stream = @stream;
IF @@ROWCOUNT = 0 INSERT INTO cdc_sync.checkpoints (stream, position) VALUES (@stream, @position);`,
};

export const READ_CHECKPOINT: Query = { name: 'sink.read-checkpoint', sql: `SELECT position FROM cdc_sync.checkpoints WHERE stream = @stream` };

/** retry-failed: the stream's dead letters not retried yet, oldest first. */
export const OPEN_DEAD_LETTERS: Query = {
  name: 'sink.open-dead-letters',
  sql: `SELECT CAST(id AS varchar(20)) AS id, table_name AS [table], payload, position FROM cdc_sync.dead_letters
 WHERE stream = @stream AND retried_at IS NULL AND (@table IS NULL OR table_name = @table) ORDER BY id`,
};

export const MARK_DEAD_LETTERS_RETRIED: Query = {
  name: 'sink.mark-dead-letters-retried',
  sql: `UPDATE cdc_sync.dead_letters SET retried_at = SYSUTCDATETIME()
 WHERE id IN (SELECT CAST(value AS bigint) FROM OPENJSON(@ids))`,
};
