import type { MssqlClient } from '../../db/mssql/client.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetriedRead } from '../read-with-retry.js';
import { idList, type QueueStatements } from './queue-queries.js';

const PURGE_BATCH = 1000;

/** The queue's housekeeping beside the reads: old Synced rows deleted, leases of rows handed over kept. */
export class QueueUpkeep {
  private lastPurge = 0;

  constructor(
    private readonly context: () => StreamContext,
    private readonly client: () => MssqlClient | undefined,
    private readonly statements: () => QueueStatements | undefined,
    private readonly query: RetriedRead,
    private readonly options: { retentionHours: number; leaseSeconds: number; purgeIntervalMs?: number },
  ) {}

  get purgeDue(): boolean {
    return Date.now() - this.lastPurge >= (this.options.purgeIntervalMs ?? 300_000);
  }

  /** Deletes Synced rows older than the retention, a few small batches at a time. */
  async purge(): Promise<void> {
    this.lastPurge = Date.now();
    let total = 0;
    try {
      for (let i = 0; i < 10; i += 1) {
        const [row] = await this.query(() =>
          this.client()!.query<{ deleted: number }>(this.statements()!.purge, {
            limit: { type: 'int', value: PURGE_BATCH },
            hours: { type: 'int', value: Math.max(1, Math.ceil(this.options.retentionHours)) },
          }),
        );
        total += row?.deleted ?? 0;
        if ((row?.deleted ?? 0) < PURGE_BATCH) break;
      }
    } catch (error) {
      // Housekeeping: the queue works without it; say so and try at the next interval.
      this.context().log.warn({ err: (error as Error).message }, 'purging Synced queue rows failed');
    }
    if (total > 0) this.context().log.info({ deleted: total, retentionHours: this.options.retentionHours }, 'purged Synced queue rows');
  }

  /** Keeps the lease of rows handed over but not yet committed (a sink retrying for minutes). */
  async renew(ids: number[], owner: string): Promise<void> {
    const client = this.client();
    const statements = this.statements();
    if (ids.length === 0 || !client || !statements) return;
    await client
      .query(statements.renew, {
        ids: { type: 'nvarchar-max', value: idList(ids) },
        owner: { type: 'nvarchar', value: owner },
        lease: { type: 'int', value: this.options.leaseSeconds },
      })
      .catch((error: unknown) => this.context().log.warn({ err: (error as Error).message }, 'renewing queue leases failed'));
  }
}
