import type { Value } from '../../core/change-event.js';

/**
 * Where an mssql-queue reader stands. The queue itself keeps which rows are
 * done (Status), so the position only carries what the database cannot:
 * the progress of a table copy (the last key copied, null: not begun) and a
 * counter that makes each chunk's position unique, so `committed` can tell
 * which claimed rows a checkpoint covers. A chunk's position also lists the
 * queue rows handed over up to it and not yet marked (`applied`): the sink
 * stores the position with the rows, so when the process dies before
 * marking them the next start marks them Synced instead of applying them a
 * second time, after newer changes of their records.
 *
 * Text form: `{"seq":12,"snapshot":{"dbo.tblPatients":[1042]},"applied":[7,8]}`,
 * with `"where":{"dbo.tblPatients":"…"}` for a copy of the rows a condition
 * holds for (`cdc-sync snapshot --where`).
 */
export class QueuePosition {
  constructor(
    readonly seq: number,
    /** Tables still to copy, in configuration order, with the last key copied. */
    readonly snapshot: Readonly<Record<string, Value[] | null>>,
    /** QueueIDs the checkpoint covers that may not be marked yet. */
    readonly applied: readonly number[] = [],
    /** Per table being copied: the condition its copy is limited to. */
    readonly where: Readonly<Record<string, string>> = {},
  ) {}

  static readonly start = new QueuePosition(0, {});

  static parse(text: string): QueuePosition {
    let o: { seq?: unknown; snapshot?: unknown; applied?: unknown; where?: unknown };
    try {
      o = JSON.parse(text) as typeof o;
    } catch {
      throw new Error(`not an mssql-queue position: ${text}`);
    }
    if (!o || typeof o !== 'object' || !Number.isSafeInteger(o.seq)) throw new Error(`not an mssql-queue position: ${text}`);
    const snapshot = o.snapshot && typeof o.snapshot === 'object' ? (o.snapshot as Record<string, Value[] | null>) : {};
    const applied = Array.isArray(o.applied) ? o.applied.filter((id): id is number => Number.isSafeInteger(id)) : [];
    const where = o.where && typeof o.where === 'object' ? (o.where as Record<string, string>) : {};
    return new QueuePosition(o.seq as number, snapshot, applied, where);
  }

  toString(): string {
    return JSON.stringify({
      seq: this.seq,
      ...(this.snapping ? { snapshot: this.snapshot } : {}),
      ...(this.applied.length > 0 ? { applied: this.applied } : {}),
      ...(Object.keys(this.where).length > 0 ? { where: this.where } : {}),
    });
  }

  /** This position as stored with a chunk whose rows, and earlier unmarked ones, are `ids`. */
  covering(ids: number[]): QueuePosition {
    return new QueuePosition(this.seq, this.snapshot, ids, this.where);
  }

  /** True while a table copy is still to be made or finished. */
  get snapping(): boolean {
    return Object.keys(this.snapshot).length > 0;
  }

  /** The next chunk's position. */
  next(): QueuePosition {
    return new QueuePosition(this.seq + 1, this.snapshot, [], this.where);
  }

  /**
   * Copy `table` after key `last` (null: from the start), or mark it copied
   * (undefined). A copy from the start takes `where` (none: every row); one
   * going on keeps its own.
   */
  withSnapshot(table: string, last: Value[] | null | undefined, where?: string): QueuePosition {
    const snapshot = { ...this.snapshot };
    const conditions = { ...this.where };
    if (last === undefined) delete snapshot[table];
    else snapshot[table] = last;
    if (last === undefined || (last === null && where === undefined)) delete conditions[table];
    else if (last === null) conditions[table] = where!;
    return new QueuePosition(this.seq, snapshot, [], conditions);
  }
}
