import { errorMessage } from '../core/errors.js';
import type { StreamContext } from '../streams/context.js';

/**
 * The change log is looked at for pruning at most this often (and as often
 * as the retention when that is shorter: tests). Against a retention of
 * hours, minutes are exact enough, and an idle stream then sends its source
 * about one statement a second, its poll (bench:latency measured 1.10 a
 * second with pruning once a minute).
 */
const PRUNE_EVERY_MS = 5 * 60_000;

/**
 * Keeps a trigger-fed change log (`cdc_sync.changes`, `cdc_sync_changes`)
 * from growing for ever: when its reader is caught up, it records how far
 * its checkpoint goes (one row per stream in the log's readers table), then
 * deletes the changes that every reader has applied and that are older than
 * the retention, and reports the rows left (`cdc_sync_changelog_rows`).
 * A log set up before the readers table existed is not pruned: one warning
 * says to apply `init-sql` again.
 */
export class ChangeLogPruning {
  private checkpoint: string | null = null;
  private saved: string | null = null;
  private lastRun = 0;
  private disabled = false;

  constructor(private readonly retentionHours: number) {}

  /** The reader's stored checkpoint, in the form the readers table takes (a snapshot, an id). */
  checkpointed(mark: string | null): void {
    this.checkpoint = mark;
  }

  /** `statements`: save the reader ($1 stream, $2 mark), prune ($1 hours), count the rows left. */
  async maybePrune(
    context: StreamContext,
    query: <T>(sql: string, params: unknown[]) => Promise<T[]>,
    [saveReader, prune, count]: [string, string, string],
  ): Promise<void> {
    const now = Date.now();
    if (this.disabled || this.checkpoint === null || now - this.lastRun < Math.min(PRUNE_EVERY_MS, this.retentionHours * 3_600_000)) return;
    this.lastRun = now;
    try {
      if (this.checkpoint !== this.saved) await query(saveReader, [context.stream, this.checkpoint]);
      this.saved = this.checkpoint;
      await query(prune, [this.retentionHours]);
      const [rows] = await query<{ n: number }>(count, []);
      context.metrics.changeLogRows.set({ stream: context.stream, direction: context.direction }, Number(rows?.n ?? 0));
    } catch (error) {
      if (!/cdc_sync[._]readers/.test(errorMessage(error))) throw error;
      this.disabled = true;
      context.log.warn({ err: errorMessage(error) }, 'the change log has no readers table: it is not pruned; apply the output of `cdc-sync init-sql` again');
    }
  }
}
