import { keyString, type ChangeEvent, type Op, type RejectedChange, type Row, type Value } from '../../core/change-event.js';
import { checkSourceColumns } from '../check-columns.js';
import { ConfigError, PermanentError } from '../../core/errors.js';
import { parseJson } from '../../core/json.js';
import { parseQualifiedName } from '../../core/names.js';
import type { TableConfig } from '../../core/mapping.js';
import type { QueueRow, TableInfoRow } from './queue-queries.js';
import { splitTable } from '../../db/mssql/identifiers.js';

/** A configured table as the queue reader knows it after open(). */
export interface QueuedTable {
  /** `schema.table` as configured. */
  source: string;
  target: string;
  key: string[];
  /** Column name → SQL Server type name (lower case), in table order. */
  columns: Map<string, string>;
}

/** Checks a configured table against its columns in sys.columns (queue.table-info); the key defaults to the primary key. */
export function describeTable(table: TableConfig, rows: TableInfoRow[], path: string): QueuedTable {
  if (rows.length === 0) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
  const columns = new Map(rows.map((r) => [r.column_name, r.column_type.toLowerCase()]));
  const primary = rows.filter((r) => r.key_ordinal !== null).sort((a, b) => a.key_ordinal! - b.key_ordinal!);
  const key = checkSourceColumns(table, path, [...columns.keys()], primary.map((r) => r.column_name));
  return { source: table.source, target: table.target, key, columns };
}

const OPS: Record<string, Op> = { INSERT: 'insert', I: 'insert', UPDATE: 'update', U: 'update', DELETE: 'delete', D: 'delete' };

/** FOR JSON writes these as base64 text. */
const BINARY = new Set(['binary', 'varbinary', 'image', 'timestamp']);

/**
 * Turns claimed SyncQueue rows into change events. TableName may be the
 * configured source (`dbo.tblPatients`, `tblPatients`, as cdc-sync's
 * triggers write it) or the target (`patients`, as the older scripts'
 * triggers wrote it); both name the same configured table.
 */
export class QueueRowReader {
  private readonly byName = new Map<string, QueuedTable>();
  /** Every TableName value that belongs to a configured table, as the claim filters on. */
  readonly names: string[] = [];

  constructor(
    readonly tables: QueuedTable[],
    private readonly maxAttempts: number,
    private readonly warn: (message: string, context: Record<string, string>) => void = () => undefined,
  ) {
    for (const table of tables) {
      const [schema, name] = splitTable(table.source);
      // An older script's trigger may name the target table (when the configuration names it).
      const target = table.target ? [table.target, parseQualifiedName(table.target).name] : [];
      for (const alias of [table.source, `${schema}.${name}`, name, ...target]) {
        // SQL Server's usual collations compare names without case; so does this map.
        const id = alias.toLowerCase();
        const owner = this.byName.get(id);
        if (owner && owner !== table) {
          this.warn('queue TableName fits two configured tables; the first one gets it', { name: alias, table: owner.source });
          continue;
        }
        if (!owner) this.names.push(alias);
        this.byName.set(id, table);
      }
    }
  }

  /** The TableName values that name `source`. */
  namesOf(source: string): string[] {
    return this.names.filter((n) => this.tableFor(n)?.source === source);
  }

  tableFor(tableName: string): QueuedTable | undefined {
    return this.byName.get(tableName.toLowerCase());
  }

  /**
   * One chunk's changes and, for `committed`, each row's record (table and
   * key; null for a rejected row, which fails alone).
   */
  toChanges(claimed: QueueRow[], position: string, stream: string): { events: ChangeEvent[]; rejected: RejectedChange[]; rows: Map<number, string | null> } {
    const events: ChangeEvent[] = [];
    const rejected: RejectedChange[] = [];
    const rows = new Map<number, string | null>();
    for (const row of claimed) {
      const change = this.toChange(row, position, stream);
      if ('error' in change) rejected.push(change);
      else events.push(change);
      rows.set(row.QueueID, 'error' in change ? null : `${change.table}\u0000${keyString(change.key)}`);
    }
    return { events, rejected, rows };
  }

  toChange(row: QueueRow, position: string, stream: string): ChangeEvent | RejectedChange {
    const table = this.tableFor(row.TableName);
    const reject = (message: string, reason: 'malformed' | 'other' = 'malformed'): RejectedChange => ({
      table: table?.source ?? row.TableName,
      sourceRef: String(row.QueueID),
      key: null,
      payload: row.JsonData ?? '',
      error: new PermanentError(message, { reason, context: { stream, table: table?.source ?? row.TableName, position: `QueueID ${row.QueueID}` } }),
      position,
    });
    if (!table) return reject(`SyncQueue row ${row.QueueID}: table ${row.TableName} is not configured for this stream`);
    if (row.Attempts > this.maxAttempts) {
      // Claimed again and again without being marked: it keeps killing or stalling the process.
      const last = row.LastError ? `; last error: ${row.LastError}` : '';
      return reject(`SyncQueue row ${row.QueueID}: gave up after ${row.Attempts - 1} attempts${last}`, 'other');
    }
    const op = OPS[row.Operation.trim().toUpperCase()];
    if (!op) return reject(`SyncQueue row ${row.QueueID}: unknown operation ${JSON.stringify(row.Operation)}`);
    let image: Row | null = null;
    if (row.JsonData !== null && row.JsonData.trim() !== '') {
      try {
        const parsed = parseJson(row.JsonData);
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || parsed instanceof Date || parsed instanceof Uint8Array) {
          throw new Error('JsonData is not a JSON object');
        }
        image = normalize(parsed as Row, table);
      } catch (error) {
        return reject(`SyncQueue row ${row.QueueID}: malformed JsonData: ${(error as Error).message}`);
      }
    } else if (op !== 'delete') {
      return reject(`SyncQueue row ${row.QueueID}: ${row.Operation} without JsonData`);
    }
    const key = keyOf(table, image, row.RecordID);
    if (!key) return reject(`SyncQueue row ${row.QueueID}: no value for the key (${table.key.join(', ')}) in JsonData or RecordID`);
    return {
      table: table.source,
      op,
      key,
      row: op === 'delete' ? null : image,
      ...(op === 'delete' && image ? { before: image } : {}),
      position,
      commitTime: row.CreatedAt,
      sourceRef: String(row.QueueID),
    };
  }
}

/**
 * SQL Server's JSON forms as plain values: binary columns from base64 to
 * bytes. A column missing from the image is NULL (the older triggers wrote
 * FOR JSON without INCLUDE_NULL_VALUES, which leaves NULL columns out), so an
 * update to NULL reaches the target. datetime2 text without zone stays text:
 * the sinks read it as UTC, as they do the CDC source's values.
 */
function normalize(image: Row, table: QueuedTable): Row {
  const row: Row = {};
  for (const [column, type] of table.columns) {
    const value = image[column];
    row[column] = value === undefined ? null : BINARY.has(type) && typeof value === 'string' ? Buffer.from(value, 'base64') : value;
  }
  // Columns added to the table after open() still travel; the mapping decides.
  for (const [column, value] of Object.entries(image)) if (!(column in row)) row[column] = value;
  return row;
}

/** Key values from the image, else from RecordID (a delete queued without an image). */
function keyOf(table: QueuedTable, image: Row | null, recordId: string | null): Row | null {
  const fromImage = table.key.map((k) => image?.[k] ?? null);
  if (fromImage.every((v) => v !== null)) return Object.fromEntries(table.key.map((k, i) => [k, fromImage[i]!]));
  if (recordId === null) return null;
  // One key column: the value as CONVERT(nvarchar) wrote it. Several: a JSON array of FOR JSON values.
  if (table.key.length === 1) return { [table.key[0]!]: recordId };
  let values: Value;
  try {
    values = parseJson(recordId);
  } catch {
    return null;
  }
  if (!Array.isArray(values) || values.length !== table.key.length || values.some((v) => v === null)) return null;
  const binary = (k: string, v: Value) => (BINARY.has(table.columns.get(k) ?? '') && typeof v === 'string' ? Buffer.from(v, 'base64') : v);
  return Object.fromEntries(table.key.map((k, i) => [k, binary(k, (values as Value[])[i]!)]));
}
