import type { Value } from '../../core/change-event.js';

/** How far a table's catch-up read got: every row up to (updated-at, key) is applied. */
export interface Watermark {
  at: string;
  key: Value[];
}

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
}
