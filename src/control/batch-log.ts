/** One applied batch as `GET /api/sync/logs` shows it (the older sync's logs endpoint). */
export interface BatchRecord {
  time: string;
  stream: string;
  tables: Record<string, { applied: number; failed: number }>;
  durationMs: number;
  error?: string;
}

/**
 * The last `capacity` batches of this process, all streams together. A ring
 * buffer: memory stays bounded however long the process runs.
 */
export class BatchLog {
  private readonly records: BatchRecord[] = [];
  private next = 0;

  constructor(readonly capacity = 200) {}

  add(record: BatchRecord): void {
    if (this.records.length < this.capacity) this.records.push(record);
    else this.records[this.next] = record;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Newest first, at most `limit`. */
  recent(limit = this.capacity): BatchRecord[] {
    const ordered = this.records.length < this.capacity ? [...this.records] : [...this.records.slice(this.next), ...this.records.slice(0, this.next)];
    return ordered.reverse().slice(0, Math.max(0, limit));
  }
}
