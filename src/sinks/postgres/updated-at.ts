import type { Row } from '../../core/change-event.js';
import { parseJson, toJsonText } from '../../core/json.js';
import type { PoolClient } from '../../db/postgres/connection.js';
import type { ConflictEntry } from '../conflicts.js';
import { conflictSql, pingBackSql, type UpsertShape } from './queries.js';
import type { TargetInfo } from './target-info.js';

/**
 * newer-wins by the target's updated-at column: the keys of an upsert's rows
 * (`param`) whose stored row is newer, read before the upsert, to count and
 * log them and, where the table is captured here, to ping the winning rows back.
 */
export async function resolveByUpdatedAt(
  client: PoolClient,
  target: TargetInfo,
  shape: UpsertShape & { newerWinsBy: string },
  param: string,
  table: string,
  stream: string,
): Promise<ConflictEntry[]> {
  const losers = (await client.query<Row>(conflictSql(shape), [param])).rows.map((row) => byUpdatedAt(row, table, stream));
  if (losers.length > 0 && target.captured) {
    await client.query(pingBackSql(target.table.name, target.key), [toJsonText(losers.map((l) => l.key)), target.qualified]);
  }
  return losers;
}

/** A row of `conflictSql` (key columns, the incoming and the stored row) as a conflict log entry: the stored row won. */
function byUpdatedAt(row: Row, table: string, stream: string): ConflictEntry {
  const { 'cdc_sync incoming': incoming, 'cdc_sync stored': stored, ...key } = row;
  const storedRow = typeof stored === 'string' ? (parseJson(stored) as Row) : null;
  return {
    stream,
    table,
    key,
    rule: 'updated-at',
    op: 'update',
    incoming: typeof incoming === 'string' ? (parseJson(incoming) as Row) : null,
    incoming_time: null,
    stored: storedRow,
    stored_time: null,
    winner: 'stored',
    winning: storedRow,
  };
}
