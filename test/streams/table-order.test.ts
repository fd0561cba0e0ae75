import { describe, expect, it } from 'vitest';
import type { QualifiedName } from '../../src/core/names.js';
import { parentsFirst } from '../../src/streams/table-order.js';

const table = (source: string, name: string, references: QualifiedName[] = [], schema: string | undefined = 'public') => ({
  source,
  target: { name: { schema, name }, columns: [], primaryKey: [], uniqueKeys: [], references },
});

describe('parentsFirst', () => {
  it("orders tables by the target's foreign keys, not by the configuration", () => {
    const order = parentsFirst([
      table('dbo.lines', 'lines', [{ schema: 'public', name: 'orders' }, { schema: 'public', name: 'products' }]),
      table('dbo.orders', 'orders', [{ schema: 'public', name: 'customers' }]),
      table('dbo.products', 'products'),
      table('dbo.customers', 'customers'),
    ]);
    expect(order).toEqual(['dbo.products', 'dbo.customers', 'dbo.orders', 'dbo.lines']);
  });

  it('keeps configuration order where no foreign key decides, and inside a cycle', () => {
    expect(parentsFirst([table('b', 'b'), table('a', 'a')])).toEqual(['b', 'a']);
    const cycle = parentsFirst([
      table('x', 'x', [{ schema: 'public', name: 'y' }]),
      table('y', 'y', [{ schema: 'public', name: 'x' }]),
      table('z', 'z', [{ schema: 'public', name: 'x' }]),
    ]);
    expect(cycle).toEqual(['x', 'y', 'z']);
  });

  it('matches SQLite references, which carry no schema, and ignores parents that are not synced', () => {
    const order = parentsFirst([
      table('child', 'child', [{ schema: undefined, name: 'parent' }, { schema: undefined, name: 'elsewhere' }], undefined),
      table('parent', 'parent', [], undefined),
    ]);
    expect(order).toEqual(['parent', 'child']);
  });
});
