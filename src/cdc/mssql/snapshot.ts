import type { ChangeEvent, Row, Value } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import { columnList } from './cdc-queries.js';
import { quote, splitTable } from '../../db/mssql/identifiers.js';
import type { MssqlClient, Params } from '../../db/mssql/client.js';
import { COPY_TIME } from '../table-copy.js';
import type { StreamContext } from '../../streams/context.js';
import { CHANGED_COLUMN, type KeyColumn, readPage, TABLE_COLUMNS, TABLE_ROWS } from './snapshot-queries.js';
import { declaredType, type TableColumn } from '../../db/mssql/columns.js';

/**
 * A statement fragment that tells, for a row `t` of a page, whether its key
 * still has a change the stream has not applied yet (a Pending queue row,
 * a change-table row after the copy's LSN): `sql` is a select-list
 * expression that is 1 then, `params` its parameters (more may be given
 * to each `next`).
 */
export interface ChangedCheck {
  sql: string;
  params: Params;
}

/**
 * Copies one table in key order, a page at a time (keyset pagination), as
 * copied upserts. Pages are independent reads, so a restart continues after
 * the last key whose page was applied. A row whose key the `changed` check
 * finds with a change still to stream is left out of its page: the stream
 * brings that key's changes in order, and a copied image newer than them
 * would otherwise be followed by older ones (Netflix DBLog's rule, with the
 * check read in the same statement as the row).
 */
export class TableSnapshot {
  private shape: { name: string; columns: string; key: KeyColumn[] } | undefined;
  /** Rows read by this process since the copy (re)started, and the table's rows then, for the progress gauge. */
  private read = 0;
  private total: number | null = null;

  constructor(
    private readonly client: MssqlClient,
    readonly table: string,
    private readonly key: string[],
    private readonly changed?: ChangedCheck,
  ) {}

  async prepare(): Promise<void> {
    const [schema, name] = splitTable(this.table);
    const columns = await this.client.query<TableColumn>(TABLE_COLUMNS, {
      table: { type: 'nvarchar', value: `${quote(schema)}.${quote(name)}` },
    });
    if (columns.length === 0) throw new ConfigError(`table ${this.table} does not exist in the source database`);
    const keyColumns: KeyColumn[] = this.key.map((k) => {
      const column = columns.find((c) => c.column_name === k);
      if (!column) throw new ConfigError(`key column ${k} does not exist in ${this.table}`);
      return { name: k, type: declaredType(column) };
    });
    this.shape = { name: `${schema}.${name}`, columns: columnList(columns), key: keyColumns };
  }

  /**
   * The next page after `after` (null: from the start), without the rows
   * left out; `last` is the key to continue from, `read` the rows read.
   * `changedParams`: parameters of the `changed` check for this page;
   * `where`: only the rows this condition holds for (`cdc-sync snapshot --where`).
   */
  async next(after: Value[] | null, limit: number, changedParams: Params = {}, where?: string): Promise<{ rows: Row[]; last: Value[] | null; read: number }> {
    if (!this.shape) await this.prepare();
    // The statement text is built per page (a few strings, beside a round trip): the condition may change between copies.
    const page = readPage(this.shape!.name, this.shape!.columns, this.shape!.key, this.changed?.sql, where);
    if (after === null || this.total === null) await this.countRows(after === null);
    const params = { ...this.changed?.params, ...changedParams, limit: { type: 'int' as const, value: limit } };
    const rows =
      after === null
        ? await this.client.query<Row>(page.first, params)
        : await this.client.query<Row>(page.next, { ...params, after: { type: 'nvarchar-max', value: JSON.stringify(after.map(keyText)) } });
    const lastRow = rows.at(-1);
    const last = lastRow ? this.key.map((k) => lastRow[k] ?? null) : after;
    if (!this.changed) return { rows, last, read: rows.length };
    const kept: Row[] = [];
    for (const { [CHANGED_COLUMN]: changed, ...row } of rows) if (!changed) kept.push(row);
    return { rows: kept, last, read: rows.length };
  }

  private async countRows(restart: boolean): Promise<void> {
    const [schema, name] = splitTable(this.table);
    const [row] = await this.client.query<{ total: number | string | null }>(TABLE_ROWS, { table: { type: 'nvarchar', value: `${quote(schema)}.${quote(name)}` } });
    this.total = Number(row?.total ?? 0);
    if (restart) this.read = 0;
  }

  /** A page read: `cdc_sync_snapshot_rows_total` and the progress gauge. */
  counted(context: StreamContext, page: { rows: Row[]; read: number }, done: boolean): void {
    this.read += page.read;
    const labels = { stream: context.stream, direction: context.direction, table: this.table };
    context.metrics.snapshotRows.inc(labels, page.rows.length);
    context.metrics.snapshotProgress.set(labels, done ? 1 : this.total ? Math.min(0.99, this.read / this.total) : 0);
  }

  toEvents(rows: Row[], position: string, source: string): ChangeEvent[] {
    return rows.map((row) => ({
      table: source,
      op: 'insert' as const,
      key: Object.fromEntries(this.key.map((k) => [k, row[k] ?? null])),
      row,
      position,
      commitTime: COPY_TIME,
      copied: true,
    }));
  }
}

/** Key values as the T-SQL CAST reads them back: dates without the zone letter, binary as 0x-hex. */
function keyText(value: Value): Value {
  if (value instanceof Date) return value.toISOString().replace('Z', '');
  if (value instanceof Uint8Array) return `0x${Buffer.from(value).toString('hex')}`;
  if (typeof value === 'bigint') return value.toString();
  return value;
}
