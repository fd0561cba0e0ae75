import type { Value } from '../../core/change-event.js';

/**
 * How far a table's catch-up read got: every row up to (updated-at, key) is
 * applied. `copying`: a copy of every row (`snapshot: initial`, `cdc-sync
 * snapshot`) is under way; it began at the empty watermark (`at` '') and
 * ends with the table's first empty page. `where`: the copy reads only the
 * rows these PostgREST filters hold for (`cdc-sync snapshot --where`), so
 * its last row says nothing about the others: at its end the table goes
 * back to `resume`, its watermark before the copy (none: the lookback).
 */
export interface Watermark {
  at: string;
  key: Value[];
  copying?: true;
  where?: string;
  resume?: Watermark;
}

/** The watermark a copy of every row starts from. */
export const COPY_FROM_START: Watermark = { at: '', key: [], copying: true };

/**
 * Position of a supabase-realtime source: one catch-up watermark per table
 * (and one for the tombstone table). Live events never move it: an event
 * that arrives after a lost one would carry the watermark past the loss.
 * Only a completed catch-up read does, so a restart re-reads from the last
 * one and nothing is missed (a replay is harmless: sinks are idempotent).
 */
export class RealtimePosition {
  constructor(readonly tables: Record<string, Watermark>) {}

  static parse(text: string | null): RealtimePosition {
    if (!text) return new RealtimePosition({});
    return new RealtimePosition((JSON.parse(text) as { tables?: Record<string, Watermark> }).tables ?? {});
  }

  toString(): string {
    return JSON.stringify({ tables: this.tables });
  }

  with(table: string, watermark: Watermark): RealtimePosition {
    return new RealtimePosition({ ...this.tables, [table]: watermark });
  }

  private without(table: string): RealtimePosition {
    const { [table]: _, ...rest } = this.tables;
    return new RealtimePosition(rest);
  }

  /** A copy of `table` from the start, of every row or of those `where` holds for. */
  copy(table: string, where: string | undefined): RealtimePosition {
    if (where === undefined) return this.with(table, COPY_FROM_START);
    const current = this.tables[table];
    // A copy asked for during another goes back to where the other would have.
    const resume = current?.copying ? current.resume : current && { at: current.at, key: current.key };
    return this.with(table, { ...COPY_FROM_START, where, ...(resume ? { resume } : {}) });
  }

  /**
   * After a catch-up page of `table` that read from `after`: at its last row;
   * at an empty page, a copy ends and a table read for the first time keeps
   * the watermark the read began at.
   */
  afterPage(table: string, after: Watermark, last: Watermark | null): RealtimePosition {
    // A copy is under way until its table reads an empty page.
    const copying: Partial<Watermark> = after.copying ? { copying: true, ...(after.where ? { where: after.where } : {}), ...(after.resume ? { resume: after.resume } : {}) } : {};
    if (last) return this.with(table, { ...last, ...copying });
    if (after.copying && after.where) return after.resume ? this.with(table, after.resume) : this.without(table);
    if (after.copying) return this.with(table, { at: after.at, key: after.key });
    if (!this.tables[table]) return this.with(table, after);
    return this;
  }

  /** The tables whose copy is under way. */
  get copying(): string[] {
    return Object.entries(this.tables)
      .filter(([, w]) => w.copying)
      .map(([table]) => table);
  }
}
