import type { QualifiedName } from '../../core/names.js';
import type { PoolClient } from '../../db/postgres/connection.js';
import { classifyPgError } from '../../db/postgres/errors.js';
import type { Logger } from '../../log.js';
import type { StatementGroup } from '../statement-groups.js';
import { copyInSql } from './queries.js';

/** COPY of a table's new rows failed for a reason other than the connection: the batch is applied again without it. */
export class CopyRefused extends Error {
  constructor(
    readonly table: string,
    readonly reason: string,
  ) {
    super(`COPY into the target of ${table} refused: ${reason}`);
  }
}

/** Batches a table's new rows skip COPY after it was refused: doubling from the first to the last, reset by a COPY that succeeds. */
const COPY_PAUSE = { first: 16, max: 1024 };

/** The sink's COPY of new rows, and the tables it is paused for. */
export class NewRowCopy {
  /** Tables whose new rows go as upserts up to batch `until` (COPY was refused: the rows existed, or the table takes no COPY). */
  private readonly paused = new Map<string, { until: number; span: number }>();
  private batches = 0;

  nextBatch(): void {
    this.batches += 1;
  }

  allowed(table: string): boolean {
    const paused = this.paused.get(table);
    return !paused || this.batches > paused.until;
  }

  /** COPY of new rows; refused (not a connection or other transient failure): CopyRefused, and the batch goes again without it. */
  async copy(client: PoolClient, target: QualifiedName, group: StatementGroup, data: Buffer[], stream: string | undefined, sent?: () => void): Promise<number> {
    let written: number;
    try {
      written = await client.copyFrom!(copyInSql(target, group.columns), data, sent);
    } catch (error) {
      const classified = classifyPgError(error, { stream, table: group.table });
      if (classified.transient) throw error;
      throw new CopyRefused(group.table, classified.message);
    }
    const paused = this.paused.get(group.table);
    if (paused && this.batches > paused.until) this.paused.delete(group.table);
    return written;
  }

  pause(refused: CopyRefused, log: Logger | undefined): void {
    const span = Math.min(COPY_PAUSE.max, (this.paused.get(refused.table)?.span ?? COPY_PAUSE.first / 2) * 2);
    this.paused.set(refused.table, { until: this.batches + span, span });
    // The reason may quote a key (a unique violation): debug only.
    log?.debug({ table: refused.table, batches: span, err: refused.reason }, 'COPY of new rows refused; upserting them for a while');
  }
}
