import { append } from '../../core/arrays.js';
import type { ChangeLogPosition } from './changelog-position.js';
import { READ_PAGE_SQL, TRANSACTIONS_END_SQL, type ChangeRow } from './changelog-queries.js';

type Query = <T>(sql: string, params: unknown[]) => Promise<T[]>;

/**
 * One page of the cursor's range: up to `limit` changes after
 * `cursor.after`, up to id `high`, read on to the end of their
 * transactions when the page is full. Fewer: the range is read (`rangeEnd`).
 */
export async function readChangePage(
  query: Query,
  cursor: ChangeLogPosition,
  tables: string[],
  high: bigint,
  limit: number,
): Promise<{ rows: ChangeRow[]; rangeEnd: boolean }> {
  const rows = await query<ChangeRow>(READ_PAGE_SQL, [
    cursor.done,
    cursor.upto,
    tables,
    cursor.after.toString(),
    high.toString(),
    limit,
  ]);
  const rangeEnd = rows.length < limit;
  if (!rangeEnd) await readToTransactionsEnd(query, cursor, rows, tables);
  return { rows, rangeEnd };
}

/**
 * A full page may end inside transactions: read on until every transaction
 * the page holds is complete (the rows in between may start others, which
 * are completed too). The chunk grows past readLimit for a large
 * transaction, as the WAL source's does; its position is the last id read.
 */
async function readToTransactionsEnd(query: Query, cursor: ChangeLogPosition, rows: ChangeRow[], tables: string[]): Promise<void> {
  const seen = new Set<string>();
  let from = 0;
  for (;;) {
    const xids: string[] = [];
    for (let i = from; i < rows.length; i += 1) {
      const xid = rows[i]!.xid;
      if (!seen.has(xid)) {
        seen.add(xid);
        xids.push(xid);
      }
    }
    const last = rows.at(-1)!.id;
    if (xids.length === 0) return;
    const [end] = await query<{ high: string | null }>(TRANSACTIONS_END_SQL, [cursor.done, cursor.upto, xids, last]);
    if (!end?.high) return;
    from = rows.length;
    const more = await query<ChangeRow>(READ_PAGE_SQL, [cursor.done, cursor.upto, tables, last, end.high, null]);
    append(rows, more);
  }
}
