import { keyString, type Row } from './change-event.js';
import { instantMicros } from './timestamps.js';

/** How long an own write is remembered: far longer than Realtime takes to send its echo. */
const KEEP_MS = 10 * 60_000;
const MAX_ENTRIES = 200_000;

interface Entry {
  /** Change times (ms) of the rows written; null for a delete. */
  at: number | null;
  until: number;
}

/**
 * What one stream of this process wrote into a database that another stream
 * of it reads back (two-way with Supabase, where Realtime cannot tell who
 * made a change): the reading stream drops those echoes instead of carrying
 * them back with the time they arrived. A row written by cdc-sync carries its
 * change's time in the updated-at column, so an echo is the same key with
 * exactly that time; a delete echo is the next delete of a key deleted here.
 * Noted before the write is sent, since the echo may come before the answer.
 */
export class OwnWrites {
  private readonly entries = new Map<string, Entry[]>();

  noteUpsert(database: string, table: string, key: Row, at: Date): void {
    this.add(database, table, key, at.getTime());
  }

  noteDelete(database: string, table: string, key: Row): void {
    this.add(database, table, key, null);
  }

  /**
   * An upsert this process wrote with this change time: `stored` is the
   * updated-at column as read back, to the microsecond. cdc-sync writes
   * whole milliseconds, and an edit made here within the same millisecond
   * (the trigger stamps microseconds) is not an echo.
   */
  isUpsertEcho(database: string, table: string, key: Row, stored: string): boolean {
    const micros = instantMicros(stored);
    if (micros === null) return false;
    return this.live(database, table, key).some((e) => e.at !== null && BigInt(e.at) * 1000n === micros);
  }

  /** A delete this process made; each is taken once, so a later real delete of the key is not dropped. */
  takeDeleteEcho(database: string, table: string, key: Row): boolean {
    const id = entryId(database, table, key);
    const entries = this.live(database, table, key);
    const i = entries.findIndex((e) => e.at === null);
    if (i < 0) return false;
    entries.splice(i, 1);
    if (entries.length === 0) this.entries.delete(id);
    return true;
  }

  private add(database: string, table: string, key: Row, at: number | null): void {
    const id = entryId(database, table, key);
    const entries = this.live(database, table, key);
    entries.push({ at, until: Date.now() + KEEP_MS });
    this.entries.delete(id);
    this.entries.set(id, entries);
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
  }

  private live(database: string, table: string, key: Row): Entry[] {
    const id = entryId(database, table, key);
    const entries = (this.entries.get(id) ?? []).filter((e) => e.until > Date.now());
    if (entries.length > 0) this.entries.set(id, entries);
    else this.entries.delete(id);
    return entries;
  }
}

/** keyString: a key read back from the database (7 or '7') equals the one written. */
function entryId(database: string, table: string, key: Row): string {
  return `${database}\u0000${table}\u0000${keyString(key)}`;
}
