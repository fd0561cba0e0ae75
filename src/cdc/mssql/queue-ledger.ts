/** What `committed` decides for the rows of the chunks a checkpoint covers. */
export interface Settlement {
  /** Index just past the last covered chunk: forget them once the queue is updated. */
  upto: number;
  synced: number[];
  /** Error text → the rows that fail with it. */
  failed: Map<string, number[]>;
}

/**
 * The claimed rows of chunks handed to the stream and not yet committed,
 * per chunk position (positions are unique: they carry a counter).
 */
export class ClaimLedger {
  private chunks: { position: string; rows: Map<number, string | null> }[] = [];

  /** `rows`: QueueID → table and key of its change, null for a row that was rejected. */
  add(position: string, rows: Map<number, string | null>): void {
    this.chunks.push({ position, rows });
  }

  /** Every row handed over and not yet committed. */
  ids(): number[] {
    return this.chunks.flatMap((c) => [...c.rows.keys()]);
  }

  clear(): void {
    this.chunks = [];
  }

  /** Forgets the chunks up to index `upto` (exclusive). */
  drop(upto: number): void {
    this.chunks.splice(0, upto);
  }

  /**
   * Every row of the chunks up to `position` is Synced except the failed
   * ones. The sink got only the newest change of a record (the stream
   * coalesces a batch per key), so when that change failed, the older rows of
   * the record were not applied either: they fail with it. A rejected row
   * (malformed, given up) fails alone. Null when `position` is not ours (a
   * chunk of an earlier life of this reader).
   */
  settle(position: string, failures: { sourceRef: string | undefined; error: string }[]): Settlement | null {
    const index = this.chunks.findIndex((c) => c.position === position);
    if (index < 0) return null;
    const rows = new Map<number, string | null>();
    for (const chunk of this.chunks.slice(0, index + 1)) for (const [id, record] of chunk.rows) rows.set(id, record);
    const errors = new Map<number, string>();
    const failedRecords = new Map<string, string>();
    for (const f of failures) {
      const id = Number(f.sourceRef);
      if (f.sourceRef === undefined || !rows.has(id)) continue;
      errors.set(id, f.error);
      const record = rows.get(id);
      if (record && !failedRecords.has(record)) failedRecords.set(record, f.error);
    }
    const synced: number[] = [];
    const failed = new Map<string, number[]>();
    for (const [id, record] of rows) {
      const error = errors.get(id) ?? (record ? failedRecords.get(record) : undefined);
      if (error === undefined) synced.push(id);
      else failed.set(error, [...(failed.get(error) ?? []), id]);
    }
    return { upto: index + 1, synced, failed };
  }
}
