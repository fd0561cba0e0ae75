import { append } from '../../core/arrays.js';
import type { ChangeLogPosition } from './changelog-position.js';
import { READ_PAGE_SQL, TRANSACTIONS_END_SQL, type ChangeRow } from './changelog-queries.js';

type Query = <T>(sql: string, params: unknown[]) => Promise<T[]>;

/**
 * One page of the cursor's range: the changes after `cursor.after` up to id
 * `high`, read in id windows as wide as the page still has room for, until
 * it holds at least half a page (windows are read whatever they hold, so a
 * window of another range's ids costs one read, not one per id) and then on
 * to the end of its transactions. `after`: where the next page starts
 * (the last id read or the window's end); `rangeEnd`: the range is read.
 */
export async function readChangePage(
  query: Query,
  cursor: ChangeLogPosition,
  tables: string[],
  high: bigint,
  limit: number,
): Promise<{ rows: ChangeRow[]; rangeEnd: boolean; after: bigint }> {
  const rows: ChangeRow[] = [];
  let after = cursor.after;
  while (rows.length < Math.ceil(limit / 2) && after < high) {
    const end = min(high, after + BigInt(limit - rows.length));
    append(rows, await query<ChangeRow>(READ_PAGE_SQL, [cursor.done, cursor.upto, tables, after.toString(), end.toString()]));
    after = end;
  }
  const rangeEnd = after >= high;
  if (!rangeEnd && rows.length > 0) await readToTransactionsEnd(query, cursor, rows, tables);
  const last = rows.length > 0 ? BigInt(rows.at(-1)!.id) : after;
  return { rows, rangeEnd, after: last > after ? last : after };
}

const min = (a: bigint, b: bigint) => (a < b ? a : b);

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
    const more = await query<ChangeRow>(READ_PAGE_SQL, [cursor.done, cursor.upto, tables, last, end.high]);
    append(rows, more);
  }
}
