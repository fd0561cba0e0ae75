import { quoteIdent, quoteLiteral } from '../../db/sqlite/connection.js';

/**
 * SQL of the sqlite-changelog source's copy of existing rows: a keyset walk
 * over the primary key. Rows come as the capture triggers write them
 * (`rowImage`), so a copied row reads exactly as a logged insert would.
 */

/**
 * The first @limit rows (`after` false), or the next @limit after the key in
 * @key, a JSON object of the last row's key columns. json_extract gives each
 * key value back with its own type, so the row-value comparison orders as
 * ORDER BY does. Two statements, because `@key IS NULL OR …` keeps SQLite
 * from seeking the primary key.
 */
export function copyChunkSql(table: string, rowImage: string, key: string[], after: boolean, where?: string): string {
  const columns = key.map((k) => `t.${quoteIdent(k)}`).join(', ');
  const keyImage = `json_object(${key.map((k) => `${quoteLiteral(k)}, t.${quoteIdent(k)}`).join(', ')})`;
  const conditions = [
    ...(after ? [`(${columns}) > (SELECT ${key.map((k) => `json_extract(@key, ${quoteLiteral(`$."${k.replace(/"/g, '\\"')}"`)})`).join(', ')})`] : []),
    ...(where === undefined ? [] : [`(${where})`]),
  ];
  return `SELECT ${rowImage} AS row_data, ${keyImage} AS copy_key
  FROM ${quoteIdent(table)} AS t${whereClause(conditions)}
 ORDER BY ${columns}
 LIMIT @limit`;
}

export const COUNT_ROWS_SQL = (table: string, where?: string) => `SELECT count(*) AS n FROM ${quoteIdent(table)} AS t${whereClause(where === undefined ? [] : [`(${where})`])}`;

const whereClause = (conditions: string[]) => (conditions.length === 0 ? '' : `\n WHERE ${conditions.join(' AND ')}`);
