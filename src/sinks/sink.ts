import type { ConflictEntry } from './conflicts.js';
import type { ChangeEvent, Row } from '../core/change-event.js';
import type { TableConfig, TableMapping, TargetTable } from '../core/mapping.js';
import type { StreamContext } from '../streams/context.js';

/** A change that could not be applied, kept with its error for `retry-failed`. */
export interface DeadLetter {
  stream: string;
  table: string;
  key: Row | null;
  /** The change as JSON text (or the raw payload the source could not parse). */
  payload: string;
  error: string;
  reason: string;
  position: string;
}

export interface SinkBatch {
  /**
   * Changes in target names and types, at most one per key, in apply order:
   * deletes children-first, then upserts parents-first.
   */
  changes: ChangeEvent[];
  /** Written in the same transaction when the sink `storesDeadLetters`. */
  deadLetters: DeadLetter[];
  /** Written in the same transaction when the sink `storesCheckpoints`; absent for partial applies. */
  checkpoint?: { stream: string; position: string };
  /**
   * Called (at most once) when the batch's largest statement has been handed
   * to the database and the sink waits for it: the stream reads and prepares
   * the next batch then, while the database works, rather than in between
   * the sink's round trips. A sink that never calls it leaves the stream to
   * start on the next batch as soon as this one is under way.
   */
  onSent?: () => void;
  /**
   * The source had more to read after this batch (not caught up, or a read
   * scheduled): a sink that hands changes on to another stream (nats) says
   * so, and that stream holds a change whose parent is missing until this
   * one has caught up.
   */
  more?: boolean;
}

export interface ApplyResult {
  /** Rows actually written (inserted, changed or deleted); unchanged rows are not written. */
  written: number;
  /**
   * newer-wins: incoming changes that lost to a newer stored row (source
   * table, key); with the log entry when the sink keeps no conflict log of
   * its own (the stream writes it beside the dead letters).
   */
  conflicts?: { table: string; key: Row; entry?: ConflictEntry }[];
  /** Open dead letters closed because this batch applied a later change of their key. */
  superseded?: number;
}

/**
 * A target. Rules a sink must keep:
 * - `apply` is atomic where the target allows it: all changes, dead letters and
 *   the checkpoint of one batch commit together or not at all.
 * - `apply` is idempotent: applying the same batch twice leaves the same state.
 * - An update whose values equal the stored row writes nothing, so it makes no
 *   new change on the other side (echoes die after one hop).
 * - Errors are CdcSyncErrors: transient ones are retried by the stream,
 *   permanent ones make the stream split the batch to isolate the bad change.
 */
export interface Sink {
  readonly storesCheckpoints: boolean;
  readonly storesDeadLetters: boolean;
  /** `apply` calls the batch's `onSent`. */
  readonly signalsSent?: boolean;
  /** Connects and introspects the configured target tables (same order). */
  open(context: StreamContext, tables: TableConfig[]): Promise<TargetTable[]>;
  /** The resolved mappings: `apply` gets changes whose `table` is a mapping's `source`. */
  bind(mappings: TableMapping[]): void;
  readCheckpoint(stream: string): Promise<string | null>;
  /**
   * Optional: does the CPU work for these changes (statement grouping,
   * parameter text) now, while the previous batch is still being written,
   * so that `apply` of the same array only talks to the database.
   */
  prepare?(changes: ChangeEvent[]): void;
  apply(batch: SinkBatch): Promise<ApplyResult>;
  /**
   * Optional: one cheap round trip to the target, which the stream sends
   * when the sink has been idle for a while, so a target that stopped
   * answering (a black-holed network) is seen without a batch to apply.
   */
  ping?(): Promise<void>;
  close(): Promise<void>;
}
