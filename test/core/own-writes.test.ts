import { afterEach, describe, expect, it, vi } from 'vitest';
import { OwnWrites } from '../../src/core/own-writes.js';

const DB = 'https://p.supabase.co';
const at = (ms: number) => new Date(Date.UTC(2026, 11, 3, 10, 0, 0, ms));

afterEach(() => {
  vi.useRealTimers();
});

describe('OwnWrites', () => {
  it('knows an echo by key and exact change time, whatever type the key value comes back as', () => {
    const own = new OwnWrites();
    own.noteUpsert(DB, 'public.notes', { id: 7 }, at(5));
    expect(own.isUpsertEcho(DB, 'public.notes', { id: '7' }, at(5))).toBe(true);
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 7 }, at(6))).toBe(false); // a later edit of the row
    expect(own.isUpsertEcho(DB, 'public.other', { id: 7 }, at(5))).toBe(false);
    expect(own.isUpsertEcho('https://q.supabase.co', 'public.notes', { id: 7 }, at(5))).toBe(false);
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
    expect(own.isUpsertEcho(DB, 'public.notes', { id: 1 }, at(1))).toBe(false);
    expect(own.takeDeleteEcho(DB, 'public.notes', { id: 2 })).toBe(false);
  });
});
