import type { Query } from '../../cdc/mssql/client.js';
import { quote } from '../../cdc/mssql/cdc-queries.js';
import { literal } from '../../cdc/mssql/queue-setup.js';
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
  CREATE TABLE cdc_sync.origin_marker (id int NOT NULL PRIMARY KEY, stream nvarchar(128) NOT NULL, written_at datetime2 NOT NULL);`,
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
}

function target(table: QualifiedName): string {
  return `${quote(table.schema ?? 'dbo')}.${quote(table.name)}`;
}

/** OPENJSON(@rows) WITH ([c] type '$."c"', …): JSON paths quoted so any column name works. */
function typedRows(columns: { name: string; type: string }[], parameter = '@rows'): string {
  const path = (name: string) => literal(`$."${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  return `OPENJSON(${parameter}) WITH (${columns.map((c) => `${quote(c.name)} ${c.type} ${path(c.name)}`).join(', ')})`;
}

/**
 * One MERGE per table and column set. `EXISTS (SELECT s.… EXCEPT SELECT t.…)`
 * is T-SQL's NULL-safe "differs": rows that would not change are not
 * written, so they make no CDC change and no trigger row (no echo).
 */
export function mergeSql(shape: MergeShape): Query {
  const t = target(shape.table);
  const updatable = shape.columns.map((c) => c.name).filter((c) => !shape.key.includes(c) && (!shape.updatable || shape.updatable.includes(c)));
  const on = shape.key.map((k) => `t.${quote(k)} = s.${quote(k)}`).join(' AND ');
  const names = shape.columns.map((c) => quote(c.name));
  const lines = [`MERGE ${t} WITH (HOLDLOCK) AS t`, `USING ${typedRows(shape.columns)} AS s`, `ON ${on}`];
  if (updatable.length > 0) {
    const differs = `EXISTS (SELECT ${updatable.map((c) => `s.${quote(c)}`).join(', ')} EXCEPT SELECT ${updatable.map((c) => `t.${quote(c)}`).join(', ')})`;
    const newer = shape.newerWinsBy ? ` AND (t.${quote(shape.newerWinsBy)} IS NULL OR s.${quote(shape.newerWinsBy)} >= t.${quote(shape.newerWinsBy)})` : '';
    lines.push(`WHEN MATCHED AND ${differs}${newer} THEN UPDATE SET ${updatable.map((c) => `t.${quote(c)} = s.${quote(c)}`).join(', ')}`);
  }
  lines.push(`WHEN NOT MATCHED BY TARGET THEN INSERT (${names.join(', ')}) VALUES (${names.map((n) => `s.${n}`).join(', ')});`);
  let sql = `${lines.join('\n')}\nSELECT @@ROWCOUNT AS written;`;
  if (shape.identityInsert) sql = `SET IDENTITY_INSERT ${t} ON;\n${sql}\nSET IDENTITY_INSERT ${t} OFF;`;
  return { name: 'sink.merge', meta: { table: `${shape.table.schema ?? 'dbo'}.${shape.table.name}`, shape: JSON.stringify(shape) }, sql };
}

/** newer-wins losers: incoming rows older than a different stored row (counted and logged). */
export function conflictSql(shape: MergeShape & { newerWinsBy: string }): Query {
  const t = target(shape.table);
  const by = quote(shape.newerWinsBy);
  const compared = shape.columns.map((c) => c.name).filter((c) => !shape.key.includes(c));
  return {
    name: 'sink.conflicts',
    meta: { table: `${shape.table.schema ?? 'dbo'}.${shape.table.name}`, shape: JSON.stringify(shape) },
    sql: `SELECT ${shape.key.map((k) => `s.${quote(k)}`).join(', ')}
  FROM ${typedRows(shape.columns)} AS s JOIN ${t} AS t ON ${shape.key.map((k) => `t.${quote(k)} = s.${quote(k)}`).join(' AND ')}
 WHERE t.${by} > s.${by} AND EXISTS (SELECT ${compared.map((c) => `s.${quote(c)}`).join(', ')} EXCEPT SELECT ${compared.map((c) => `t.${quote(c)}`).join(', ')})`,
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
