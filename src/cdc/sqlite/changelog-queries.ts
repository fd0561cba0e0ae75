/** The sqlite-changelog reader's statements. */

/**
 * A page of every table's changes after @after, row images only of the
 * tables in @tables: the others are counted (UnknownTables). `id` is the
 * INTEGER PRIMARY KEY, the rowid itself, so this is a range seek of the
 * table whatever ANALYZE knows (test/cdc/sqlite/changelog-source.test.ts
 * checks the plan).
 */
export const READ_PAGE_SQL = `SELECT id, table_name, op,
       CASE WHEN table_name IN (SELECT value FROM json_each(@tables)) THEN row_data END AS row_data,
       CASE WHEN table_name IN (SELECT value FROM json_each(@tables)) THEN old_data END AS old_data,
       origin, captured_at
  FROM cdc_sync_changes WHERE id > @after ORDER BY id LIMIT @limit`;

export const SAVE_READER_SQL = `INSERT INTO cdc_sync_readers (stream, after_id) VALUES (?, ?)
ON CONFLICT (stream) DO UPDATE SET after_id = excluded.after_id, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`;
// captured_at is ISO text in UTC with milliseconds, so text order is time order.
export const PRUNE_SQL = `DELETE FROM cdc_sync_changes
 WHERE id <= (SELECT min(after_id) FROM cdc_sync_readers)
   AND captured_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%f seconds', ? * 3600))`;
export const COUNT_CHANGES_SQL = `SELECT count(*) AS n FROM cdc_sync_changes`;

