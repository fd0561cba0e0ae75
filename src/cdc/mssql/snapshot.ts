import type { ChangeEvent, Row, Value } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import { columnList, quote } from './cdc-queries.js';
import type { MssqlClient } from './client.js';
import { TABLE_COLUMNS, declaredType, readPage, splitTable, type KeyColumn, type TableColumn } from './snapshot-queries.js';

/**
 * Copies one table in key order, a page at a time (keyset pagination), as
 * insert events. Pages are independent reads, so a restart continues after
 * the last key whose page was applied. Rows changed during the copy are also
 * read from the change feed afterwards; idempotent sinks make both converge.
 */
export class TableSnapshot {
  private page: ReturnType<typeof readPage> | undefined;

  constructor(
    private readonly client: MssqlClient,
    readonly table: string,
    private readonly key: string[],
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
    this.page = readPage(`${schema}.${name}`, columnList(columns), keyColumns);
  }

  /** The next page after `after` (null: from the start); `last` is the key to continue from. */
  async next(after: Value[] | null, limit: number): Promise<{ rows: Row[]; last: Value[] | null }> {
    if (!this.page) await this.prepare();
    const limitParam = { limit: { type: 'int' as const, value: limit } };
    const rows =
      after === null
        ? await this.client.query<Row>(this.page!.first, limitParam)
        : await this.client.query<Row>(this.page!.next, { ...limitParam, after: { type: 'nvarchar-max', value: JSON.stringify(after.map(keyText)) } });
    const lastRow = rows.at(-1);
    return { rows, last: lastRow ? this.key.map((k) => lastRow[k] ?? null) : after };
  }

  toEvents(rows: Row[], position: string, source: string, now: Date): ChangeEvent[] {
    return rows.map((row) => ({
      table: source,
      op: 'insert' as const,
      key: Object.fromEntries(this.key.map((k) => [k, row[k] ?? null])),
      row,
      position,
      commitTime: now,
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
