import { describe, expect, it } from 'vitest';
import { COPY_FROM_START, RealtimePosition } from '../../../src/cdc/supabase/realtime-position.js';

describe('RealtimePosition', () => {
  const read = new RealtimePosition({ notes: { at: '2026-01-01T00:00:00Z', key: [7] } });

  it('ends a whole copy at its last row, and a --where copy at the watermark the table had before it', () => {
    const whole = read.copy('notes', undefined).afterPage('notes', COPY_FROM_START, { at: '2026-02-01T00:00:00Z', key: [9] });
    expect(whole.tables.notes).toEqual({ at: '2026-02-01T00:00:00Z', key: [9], copying: true });
    expect(whole.afterPage('notes', whole.tables.notes!, null).tables.notes).toEqual({ at: '2026-02-01T00:00:00Z', key: [9] });

    const part = read.copy('notes', 'id.gt.3');
    const paged = part.afterPage('notes', part.tables.notes!, { at: '2026-02-01T00:00:00Z', key: [9] });
    expect(paged.tables.notes).toMatchObject({ copying: true, where: 'id.gt.3', resume: read.tables.notes });
    expect(paged.afterPage('notes', paged.tables.notes!, null).tables.notes).toEqual(read.tables.notes);
  });

  it('goes back, after a --where copy asked for during another copy, to the watermark from before the first; with none, to the lookback', () => {
    const first = read.copy('notes', 'id.gt.3');
    const second = first.copy('notes', 'id.lt.2');
    expect(second.tables.notes).toMatchObject({ where: 'id.lt.2', resume: read.tables.notes });
    const fresh = new RealtimePosition({}).copy('notes', 'id.gt.3');
    expect(fresh.afterPage('notes', fresh.tables.notes!, null).tables).toEqual({});
  });
});
