import type { Observable } from 'rxjs';
import type { ChangeEvent, SourceChunk } from '../core/change-event.js';
import type { StreamContext } from '../streams/context.js';

/**
 * A capture method. One instance serves one stream.
 *
 * Checkpoint rules a source must keep:
 * - `chunks(from)` starts strictly after `from` (null: from the beginning) and
 *   emits every change after it, in source order, at least once.
 * - A chunk's `position` may be stored as soon as every event of that chunk is
 *   applied, so a source transaction that must not be split stays in one chunk.
 * - Pull-based sources read only when `demand` asks (one chunk per demand): the
 *   backlog never lives in memory. Push sources keep a bounded buffer and fall
 *   back to a catch-up read from their last checkpoint when it overflows.
 */
export interface Source {
  /** Connects and checks that every configured table can be captured; throws ConfigError if not. */
  open(context: StreamContext): Promise<void>;
  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk>;
  /**
   * The position that makes the next run copy `tables` again (all when empty)
   * and stream them from the copy on; for `cdc-sync snapshot`. `where`
   * (one table only) limits the copy to the rows a condition holds for
   * (see copy-filter.ts). Sources that cannot snapshot leave it out.
   */
  requestSnapshot?(position: string | null, tables: string[], where?: string): string | null;
  /** The tables a position still has to copy (the first one being copied now), for the status. */
  copying?(position: string): string[];
  /**
   * The order the stream applies the tables in (parents first, by the
   * target's foreign keys), given before `chunks`: a source that copies tables
   * copies them in it, so no copied child waits for a parent copied later.
   */
  order?(tables: string[]): void;
  /**
   * The configured source tables whose rows the sink writes as text rows
   * (core/row-text.ts), given before `chunks`: a source that reads rows as
   * PostgreSQL's text may hand them on so, undecoded.
   */
  textRows?(tables: string[]): void;
  /**
   * Called after the sink committed everything up to `position` (and it was
   * checkpointed). `failed` lists the changes that went to the dead letter, so
   * a queue can mark them Failed and the rest done; a log reader may now
   * acknowledge `position` to the server.
   */
  committed?(position: string, failed: { sourceRef: string | undefined; table: string; error: string }[]): Promise<void>;
  /**
   * Progress is the source's own: `committed` marks its rows done (a queue
   * table), not only acknowledges a log the checkpoint points into. A change
   * held back for its parent would be marked done with its batch, so such a
   * source holds nothing back.
   */
  readonly marksDone?: boolean;
  /**
   * Called once `position` is stored as the stream's checkpoint (at start:
   * the one read back). A change log may then prune what every reader has
   * checkpointed.
   */
  checkpointed?(position: string): void;
  /**
   * Called after each batch (and at start) with the count of changes the
   * stream holds back for a missing parent. A source whose parents may come
   * through another stream (one key partition of several) reads again while
   * it holds any, so they are tried again when nothing new arrives.
   */
  holding?(count: number): void;
  /** Push sources: changes that arrived another way (a webhook) join the same buffer. */
  push?(events: ChangeEvent[]): void;
  /** Read now instead of at the next poll (queue-notify, trigger). */
  wake(): void;
  close(): Promise<void>;
}
