/**
 * The one record every source produces and every sink consumes.
 * Values are plain data (see `values.ts`): no driver types beyond Date and
 * Uint8Array, and JsonText for the exact text of a json or jsonb value.
 */
import type { JsonText } from './json.js';

export type Op = 'insert' | 'update' | 'delete' | 'truncate';

export type Value =
  | null
  | boolean
  | number
  | string
  | bigint
  | Date
  | Uint8Array
  | JsonText
  | Value[]
  | { [key: string]: Value };

export type Row = Record<string, Value>;

export interface ChangeEvent {
  /** Source table, as configured (`schema.table`). */
  table: string;
  op: Op;
  /** Primary-key columns of the source row. */
  key: Row;
  /** After-image; null for a delete. */
  row: Row | null;
  /** Before-image when the source has one (updates, deletes). */
  before?: Row | null;
  /**
   * Opaque, totally ordered checkpoint value of the source. Storing it means
   * "everything up to and including this change is applied".
   */
  position: string;
  commitTime: Date;
  /** Who wrote the change, when the source can tell (echo suppression). */
  origin?: string;
  /**
   * A row a snapshot copied from the table, not a logged change: its
   * commitTime is the Unix epoch (it loses to any logged change of its key)
   * and says nothing about lag.
   */
  copied?: boolean;
  /** The source's own handle for this change (a queue row id), handed back in `Source.committed`. */
  sourceRef?: string;
}

/**
 * A change the source could read but not understand (malformed JSON, unknown
 * operation). It goes to the dead letter with its raw payload; the stream goes on.
 */
export interface RejectedChange {
  table: string;
  sourceRef?: string;
  key: Row | null;
  payload: string;
  error: Error;
  position: string;
}

/**
 * What a source emits: the changes of one read, in source order, and the
 * position to store once all of them are applied. A chunk is never split
 * across two checkpoints, so a source keeps a transaction inside one chunk
 * when it must not be split.
 */
export interface SourceChunk {
  events: ChangeEvent[];
  rejected: RejectedChange[];
  /** Checkpoint after this chunk (the last event's position or further). */
  position: string;
  /**
   * True when the source had nothing more ready after this chunk: the batcher
   * writes now instead of waiting for more.
   */
  caughtUp: boolean;
  /**
   * A read the source has scheduled may still bring older changes (a
   * Realtime catch-up after the margin of a reconnection): a change held for
   * its missing parent waits for it instead of going to the dead letter.
   */
  readsPending?: boolean;
}

/** A key as one string, the same whatever order its columns were listed in (an identity within the process, never stored). */
export function keyString(key: Row): string {
  const columns = Object.keys(key);
  // Most keys have one column: the same text without sorting and without the intermediate arrays.
  if (columns.length === 1) return `[[${JSON.stringify(columns[0])},${JSON.stringify(stringifyKeyValue(key[columns[0]!] ?? null))}]]`;
  return JSON.stringify(columns.sort().map((k) => [k, stringifyKeyValue(key[k] ?? null)]));
}

function stringifyKeyValue(v: Value): string {
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}
