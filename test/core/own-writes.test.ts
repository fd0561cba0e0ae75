import { afterEach, describe, expect, it, vi } from 'vitest';
import { OwnWrites } from '../../src/core/own-writes.js';

const DB = 'https://p.supabase.co';
const at = (ms: number) => new Date(Date.UTC(2026, 11, 3, 10, 0, 0, ms));
/** The updated-at column as Realtime sends it back: microseconds, PostgreSQL's text form. */
const stored = (ms: number, micros = 0) => `2026-12-03 10:00:00.${String(ms * 1000 + micros).padStart(6, '0')}+00`;

afterEach(() => {
  vi.useRealTimers();
});

describe('OwnWrites', () => {
  it('knows an echo by key and exact change time, whatever type the key value comes back as', () => {
    const own = new OwnWrites();
    own.noteUpsert(DB, 'public.notes', { id: 7 }, at(5));
    expect(own.isUpsertEcho(DB, 'public.notes', { id: '7' }, stored(5))).toBe(true);
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 7 }, '2026-12-03T10:00:00.005+00:00')).toBe(true);
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 7 }, stored(6))).toBe(false); // a later edit of the row
    expect(own.isUpsertEcho(DB, 'public.other', { id: 7 }, stored(5))).toBe(false);
    expect(own.isUpsertEcho('https://q.supabase.co', 'public.notes', { id: 7 }, stored(5))).toBe(false);
  });

  // Found by the convergence checker (Supabase ⇄ PostgreSQL, seed 543712275): the portal's edit 0.8 ms after
  // the other side's, stamped 46.73698 by the trigger, was taken for the echo of cdc-sync's write of 46.736.
  it('does not take an edit made here within the same millisecond as an own write for its echo', () => {
    const own = new OwnWrites();
    own.noteUpsert(DB, 'public.notes', { id: 7 }, at(736));
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 7 }, stored(736, 980))).toBe(false);
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 7 }, stored(736))).toBe(true);
  });

  it('takes each delete once, so a later real delete of the key is handed on', () => {
    const own = new OwnWrites();
    own.noteDelete(DB, 'public.notes', { region: 'eu', id: 1 });
    expect(own.takeDeleteEcho(DB, 'public.notes', { id: 1, region: 'eu' })).toBe(true);
    expect(own.takeDeleteEcho(DB, 'public.notes', { id: 1, region: 'eu' })).toBe(false);
  });

  it('forgets after ten minutes', () => {
    vi.useFakeTimers();
    const own = new OwnWrites();
    own.noteUpsert(DB, 'public.notes', { id: 1 }, at(1));
    own.noteDelete(DB, 'public.notes', { id: 2 });
    vi.advanceTimersByTime(10 * 60_000 + 1);
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 1 }, stored(1))).toBe(false);
    expect(own.takeDeleteEcho(DB, 'public.notes', { id: 2 })).toBe(false);
  });
});
