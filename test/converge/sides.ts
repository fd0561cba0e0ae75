import { jsonMembers } from '../../src/core/json.js';
import type { Edit, ParentValues } from './history.js';

/** A row as both kinds of database are compared: ids relative to the case, values in one form. */
export type Snapshot = Record<string, Record<string, unknown>>;

/** A change the application made, as the side's own change log recorded it (for the expected outcome). */
export interface UserChange {
  table: 'parent' | 'child';
  /** Ids relative to the case; null when the image is absent. */
  before: number | null;
  after: number | null;
  image: Record<string, unknown> | null;
  /** Capture time in whole milliseconds (what the conflict rule compares). */
  time: number;
  /** Order within the side. */
  seq: number;
}

/** One row write: `table id` (id relative to the case), and what the side can tell of it (who, how). */
export interface Write {
  row: string;
  detail?: string;
}

export interface Side {
  readonly label: string;
  /** The `source:` and `sink:` YAML of this side. */
  source(): string;
  sink(): string;
  /** Applies the edits as one transaction; returns the rows they touched. */
  apply(edits: Edit[], base: number): Promise<number>;
  /**
   * The upserts as one transaction with the side's capture off (cdc-sync's
   * origin marker): rows that exist without a change-log entry, as rows
   * written before capture was set up. Sides whose capture cannot be
   * bypassed (a WAL, Realtime, SQL Server) leave it out.
   */
  applyUntracked?(edits: Edit[], base: number): Promise<number>;
  snapshot(base: number): Promise<Snapshot>;
  userChanges(base: number): Promise<UserChange[]>;
  /** Row writes of any writer (the application's and cdc-sync's) in the case's key range, in order. */
  writes(base: number): Promise<Write[]>;
  deadLetters(): Promise<number>;
  /** `cdc-sync snapshot --where` for the ids in [lo, hi) of a stream reading this side (SQL unless the side reads otherwise). */
  idsBetween?(lo: number, hi: number): string;
  /** The newest dead letters as a person reads them (table, key, reason, error), for a failure report; where the side can tell. */
  deadLetterLines?(): Promise<string[]>;
  conflicts(): Promise<number>;
  /** Runs `init-sql`'s script for this side. */
  setUp(script: string): Promise<void>;
  /** cdc-sync was killed: a stand-in ends its sessions, as the server does when their connections drop. */
  cdcSyncKilled?(): void;
  /** After its database server restarted: connect again. */
  reconnect?(): Promise<void>;
  close(): Promise<void>;
}

/**
 * After an application step of a side that keeps an updated-at column: the expected outcome orders changes by their
 * capture time in milliseconds, ties to side a, as the change-time rule does; the column is finer. Steps a
 * millisecond apart or more order the same by both.
 */
export function stepApart(): Promise<void> {
  return new Promise((r) => setTimeout(r, 2));
}

/** Ids of one case: base … base + SPAN. */
export const SPAN = 1000;

function parentRow(id: number, name: unknown, qty: unknown, at: unknown, flag: unknown, data: unknown, doc: unknown): Record<string, unknown> {
  return {
    id,
    name: name ?? null,
    qty: qty === null || qty === undefined ? null : Number(qty),
    at: at === null || at === undefined ? null : instant(at),
    flag: flag === null || flag === undefined ? null : Boolean(flag),
    data: data === null || data === undefined ? null : hex(data),
    // Its text, compared exactly: every side holds jsonb's own text (history.ts).
    doc: doc ?? null,
  };
}

/** A timestamp in any of the forms the two databases and the row images use, as epoch milliseconds. */
export function instant(value: unknown): number {
  if (value instanceof Date) return value.getTime();
  const text = String(value).trim().replace(' ', 'T');
  return Date.parse(/(Z|[+-]\d\d(:?\d\d)?)$/.test(text) ? text : `${text}Z`);
}

function hex(value: unknown): string {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  const text = String(value);
  return text.startsWith('\\x') ? text.slice(2) : text;
}

function relative(row: Record<string, unknown>, base: number): Record<string, unknown> {
  return 'parent_id' in row
    ? { id: Number(row.id) - base, parent_id: Number(row.parent_id) - base, note: row.note ?? null }
    : parentRow(Number(row.id) - base, row.name, row.qty, row.at, row.flag, row.data, row.doc);
}

/** A parent row as snapshots and change images hold it, from the values a history wrote. */
export function parentImage(id: number, v: ParentValues): Record<string, unknown> {
  return parentRow(id, v.name, v.qty, v.at === null ? null : new Date(v.at), v.flag, v.data, v.doc);
}

export function snapshotOf(parents: Record<string, unknown>[], children: Record<string, unknown>[], base: number): Snapshot {
  const out: Snapshot = {};
  for (const row of parents) out[`parent ${Number(row.id) - base}`] = relative(row, base);
  for (const row of children) out[`child ${Number(row.id) - base}`] = relative(row, base);
  return out;
}

/** `jsonDoc`: the image holds `doc` as a JSON value (PostgreSQL's row_to_json), not as a string of its text (SQLite's json_object). */
export function imageChange(table: string, rowData: string | null, oldData: string | null, time: number, seq: number, base: number, jsonDoc = false): UserChange {
  const after = rowData === null ? null : (JSON.parse(rowData) as Record<string, unknown>);
  if (after && jsonDoc && 'doc' in after) {
    const text = jsonMembers(rowData!, new Set(['doc'])).get('doc');
    after.doc = text === undefined || text === 'null' ? null : text;
  }
  const before = oldData === null ? null : (JSON.parse(oldData) as Record<string, unknown>);
  return {
    table: table.endsWith('child') ? 'child' : 'parent',
    before: before ? Number(before.id) - base : null,
    after: after ? Number(after.id) - base : null,
    image: after ? relative(after, base) : null,
    time,
    seq,
  };
}


export function inRange(c: UserChange): boolean {
  const id = c.after ?? c.before;
  return id !== null && id >= 0 && id < SPAN;
}

/** A change an application side recorded itself: a UserChange's shape, with absolute ids and its row as the database keeps it. */
export type RecordedChange = UserChange;

/** The recorded changes of one case, with ids relative to it and rows in the compared form. */
export function caseChanges(changes: RecordedChange[], base: number): UserChange[] {
  return changes
    .filter((c) => {
      const id = c.after ?? c.before ?? -1;
      return id >= base && id < base + SPAN;
    })
    .map((c) => ({
      table: c.table,
      before: c.before === null ? null : c.before - base,
      after: c.after === null ? null : c.after - base,
      image: c.image && Object.values(c.table === 'parent' ? snapshotOf([c.image], [], base) : snapshotOf([], [c.image], base))[0]!,
      time: c.time,
      seq: c.seq,
    }));
}
