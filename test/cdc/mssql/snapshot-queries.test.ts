import { describe, expect, it } from 'vitest';
import { readPage } from '../../../src/cdc/mssql/snapshot-queries.js';

describe('snapshot pages', () => {
  it('reads the first page and the next ones with two statements, neither with a catch-all @after IS NULL predicate', () => {
    const { first, next } = readPage('dbo.tblLines', '[OrderID], [LineNo]', [{ name: 'OrderID', type: 'int' }, { name: 'LineNo', type: 'nvarchar(10)' }]);
    expect(first.sql).not.toMatch(/WHERE/);
    expect(first.sql).toMatch(/^SELECT TOP \(@limit\) \[OrderID\], \[LineNo\]\n  FROM \[dbo\]\.\[tblLines\] AS t\n ORDER BY t\.\[OrderID\], t\.\[LineNo\]$/);
    expect(next.sql).not.toMatch(/IS NULL/);
    expect(next.sql).toContain(
      "WHERE (t.[OrderID] > CAST(JSON_VALUE(@after, '$[0]') AS int)) OR (t.[OrderID] = CAST(JSON_VALUE(@after, '$[0]') AS int) AND t.[LineNo] > CAST(JSON_VALUE(@after, '$[1]') AS nvarchar(10)))",
    );
  });
});

describe('readPage with a --where condition', () => {
  it('puts the condition, in parentheses, beside the key after the last page, and in a first page of its own', () => {
    const { first, next } = readPage('dbo.items', '[id], [name]', [{ name: 'id', type: 'int' }], undefined, 'name IS NOT NULL OR id < 5');
    expect(first.sql).toMatch(/FROM \[dbo\]\.\[items\] AS t\n WHERE \(name IS NOT NULL OR id < 5\)\n ORDER BY t\.\[id\]$/);
    expect(next.sql).toMatch(/WHERE \(\(t\.\[id\] > CAST\(JSON_VALUE\(@after, '\$\[0\]'\) AS int\)\)\) AND \(name IS NOT NULL OR id < 5\)\n ORDER BY/);
    expect(next.meta).toEqual({ table: 'dbo.items', where: 'name IS NOT NULL OR id < 5' });
    const whole = readPage('dbo.items', '[id], [name]', [{ name: 'id', type: 'int' }]);
    expect(whole.first.sql).not.toContain('WHERE');
    expect(whole.next.meta).toEqual({ table: 'dbo.items' });
  });
});
