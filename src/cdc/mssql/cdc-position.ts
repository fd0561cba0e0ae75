import type { Value } from '../../core/change-event.js';
import { Lsn } from './lsn.js';

/** Per-table state inside an mssql-cdc position. */
export interface TableProgress {
  /** Changes of this table are applied only after this LSN (the LSN its last snapshot started at). */
  after?: string;
  /** A snapshot in progress: started at `lsn` (null: not begun), copied up to key `key`, of the rows `where` holds for (all without). */
  snapshot?: { lsn: string | null; key: Value[] | null; where?: string };
  /** The cleanup job removed changes this table still needed; it waits for a re-snapshot. */
  gap?: string;
}

/**
 * Where an mssql-cdc reader stands: every change with start LSN below `lsn`
 * is applied, and of the transaction at `lsn` the changes up to `seqval`
 * (null: all of it). A transaction is split across checkpoints only when it
 * alone is larger than one read, and then `seqval` says exactly where, so a
 * restart neither skips nor repeats a change.
 */
export class CdcPosition {
  constructor(
    readonly lsn: Lsn,
    readonly seqval: Lsn | null,
    readonly tables: Record<string, TableProgress>,
  ) {}

  static parse(text: string): CdcPosition {
    const o = JSON.parse(text) as { lsn: string; seqval: string | null; tables?: Record<string, TableProgress> };
    return new CdcPosition(Lsn.parse(o.lsn), o.seqval ? Lsn.parse(o.seqval) : null, o.tables ?? {});
  }

  toString(): string {
    return JSON.stringify({ lsn: this.lsn.toString(), seqval: this.seqval?.toString() ?? null, tables: this.tables });
  }

  /** (lsn, seqval) after which a table's changes are still to be read. */
  resumeFor(table: string): { lsn: Lsn; seqval: Lsn } {
    const after = this.tables[table]?.after;
    const own = after ? Lsn.parse(after) : null;
    if (own && own.compare(this.lsn) >= 0) return { lsn: own, seqval: ALL };
    return { lsn: this.lsn, seqval: this.seqval ?? ALL };
  }

  with(changes: { lsn?: Lsn; seqval?: Lsn | null; tables?: Record<string, TableProgress> }): CdcPosition {
    return new CdcPosition(changes.lsn ?? this.lsn, changes.seqval === undefined ? this.seqval : changes.seqval, changes.tables ?? this.tables);
  }

  withTable(table: string, progress: TableProgress | undefined): CdcPosition {
    const tables = { ...this.tables };
    if (progress) tables[table] = progress;
    else delete tables[table];
    return this.with({ tables });
  }
}

/** A seqval above every real one: "the whole transaction". */
export const ALL = Lsn.parse('FFFFFFFFFFFFFFFFFFFF');
