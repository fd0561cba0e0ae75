import type { FakeQueue } from './fake-queue.js';
import type { FakeSqlServer } from './fake-server.js';
import type { Row } from './fake-cdc.js';

/**
 * The mssql sink's change-time statements (src/sinks/mssql/change-time-queries.ts)
 * against a FakeQueue whose tables the sink also writes (a two-way set-up
 * through mssql-queue): the trigger's catalog entry, the newest queued change
 * of each key, and ping-backs queued as DELETE rows.
 */
export class FakeQueueSink {
  /** Statements that read the queue for a table before its keys were locked in the same transaction. */
  readonly unlockedReads: string[] = [];
  private readonly locked = new Set<string>();

  constructor(
    server: FakeSqlServer,
    private readonly queue: FakeQueue,
  ) {
    const h = server.handlers;
    // sys.triggers (name, parent_id, is_disabled), sys.columns and sys.default_constraints of the queue.
    h.set('sink.queue-capture', (v) => {
      const table = queue.tableByQuoted(String(v.table));
      const trigger = table !== undefined && table.trigger && v.trigger === `trg_sync_${table.name}`;
      return [{ has_trigger: trigger ? 1 : 0, queue_id: queue.exists ? 901 : null, table_name_type: queue.tableNameType, created_at_default: queue.createdAtDefault }];
    });
    // Each batch's transaction starts with its origin mark (FakeTarget records it): no key is locked yet.
    const markOrigin = h.get('sink.mark-origin');
    h.set('sink.mark-origin', (v, q) => {
      this.locked.clear();
      return markOrigin ? markOrigin(v, q) : [];
    });
    h.set('sink.lock-keys', (v, q) => {
      // Without HOLDLOCK a missing key is not locked, and a local insert of it could commit between the read and the write.
      if (!/WITH \(UPDLOCK, HOLDLOCK\)/.test(q.sql)) throw new Error('the stand-in models only UPDLOCK, HOLDLOCK key locks');
      this.locked.add(q.meta!.table!);
      const keys = JSON.parse(String(v.keys)) as Row[];
      const t = queue.table(q.meta!.table!);
      return [{ locked: keys.filter((k) => t.rows.some((r) => t.key.every((c) => String(r[c]) === String(k[c])))).length }];
    });
    h.set('sink.local-changes', (v, q) => {
      const name = q.meta!.table!;
      if (!this.locked.has(name)) this.unlockedReads.push(name);
      const t = queue.table(name);
      // As the statement reads CreatedAt: moved to UTC when it says so, else the stored (maybe local) value.
      const toUtc = /DATEADD\(minute, -DATEPART\(TZOFFSET, SYSDATETIMEOFFSET\(\)\), q\.CreatedAt\)/.test(q.sql);
      const fromUtc = /DATEADD\(minute, DATEPART\(TZOFFSET, SYSDATETIMEOFFSET\(\)\), @since\)/.test(q.sql);
      const offset = queue.utcOffsetMinutes * 60_000;
      const since = (v.since as Date).getTime() + (fromUtc ? offset : 0);
      const keys = JSON.parse(String(v.keys)) as Row[];
      return keys.flatMap((key, idx) => {
        const id = queue.recordId(name, key);
        const times = queue.rows
          .filter((r) => r.TableName.toLowerCase() === String(v.table).toLowerCase() && r.RecordID === id && r.CreatedAt.getTime() >= since)
          .map((r) => r.CreatedAt.getTime() - (toUtc ? offset : 0));
        if (times.length === 0) return [];
        const stored = t.rows.find((r) => t.key.every((c) => String(r[c]) === String(key[c])));
        return [{ idx, local_time: new Date(Math.max(...times)), stored: stored ? queue.forJson(name, stored) : null }];
      });
    });
    h.set('sink.ping-back', (v, q) => {
      const name = q.meta!.table!;
      const toLocal = /DATEADD\(minute, DATEPART\(TZOFFSET, SYSDATETIMEOFFSET\(\)\), CONVERT/.test(q.sql);
      for (const { key, at } of JSON.parse(String(v.rows)) as { key: Row; at: string }[]) {
        queue.enqueue({
          TableName: String(v.table),
          RecordID: queue.recordId(name, key),
          Operation: 'DELETE',
          JsonData: queue.forJson(name, key, queue.table(name).key),
          CreatedAt: new Date(Date.parse(at) + (toLocal ? queue.utcOffsetMinutes * 60_000 : 0)),
        });
      }
      return [];
    });
  }
}
