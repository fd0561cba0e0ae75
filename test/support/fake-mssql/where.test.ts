import { describe, expect, it } from 'vitest';
import { rowFilter } from './where.js';

describe('the SQL Server stand-in’s --where conditions', () => {
  it('evaluates comparisons, modulo, IS NULL, AND/OR/NOT and parentheses as T-SQL does, text without case', () => {
    const rows = [
      { id: 1, name: 'Ann', note: null },
      { id: 2, name: 'bob', note: 'x' },
      { id: 3, name: "o'Neil", note: null },
      { id: 4, name: 'BOB', note: 'y' },
    ];
    const ids = (where: string) => rows.filter(rowFilter(where)).map((r) => r.id);
    expect(ids('[id] % 2 = 0')).toEqual([2, 4]);
    expect(ids("name = N'Bob'")).toEqual([2, 4]);
    expect(ids("name = 'o''Neil' OR (id >= 2 AND NOT note IS NULL)")).toEqual([2, 3, 4]);
    expect(ids('note IS NOT NULL AND id <> 4')).toEqual([2]);
    // A comparison with NULL is unknown, so the row is left out either way.
    expect(ids("note <> 'x'")).toEqual([4]);
  });

  it('refuses what it does not evaluate instead of guessing', () => {
    expect(() => rowFilter("name LIKE 'b%'")).toThrow(/does not evaluate/);
    expect(() => rowFilter('id IN (1, 2)')).toThrow(/does not evaluate/);
    expect(() => rowFilter('id > 1 garbage')).toThrow(/does not evaluate/);
  });
});
