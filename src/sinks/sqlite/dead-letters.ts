import type { DeadLetterRetryStore, OpenDeadLetter } from '../../dead-letters/retry-store.js';
import { openSqlite, type SqliteDatabase } from '../../db/sqlite/connection.js';

/**
 * `cdc-sync retry-failed` for the sqlite sink: its `cdc_sync_dead_letters`
 * table; retried letters get `retried_at`. A child dead-lettered for a
 * missing parent (reason `missing-parent`) applies once the parent arrived.
 */
export class SqliteDeadLetters implements DeadLetterRetryStore {
  private db: SqliteDatabase | undefined;
  constructor(private readonly url: string) {}
  private connect(): SqliteDatabase {
    this.db ??= openSqlite(this.url, 'sink.url', { mustExist: true });
    return this.db;
  }
  async open(stream: string, table?: string): Promise<OpenDeadLetter[]> {
    return this.connect()
      .prepare(
        `SELECT CAST(id AS TEXT) AS id, table_name AS "table", payload, position FROM cdc_sync_dead_letters
          WHERE stream = ? AND retried_at IS NULL AND (? IS NULL OR table_name = ?) ORDER BY id`,
      )
      .all(stream, table ?? null, table ?? null) as OpenDeadLetter[];
  }
  async markRetried(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    this.connect()
      .prepare(`UPDATE cdc_sync_dead_letters SET retried_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id IN (SELECT value FROM json_each(?))`)
      .run(JSON.stringify(ids.map(Number)));
  }
  async close(): Promise<void> {
    this.db?.close();
    this.db = undefined;
  }
}
