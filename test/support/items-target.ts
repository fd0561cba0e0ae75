import type { TargetTable } from '../../src/core/mapping.js';

/** public.items (id integer primary key, name text) as a sink describes it, for streams driven in-process. */
export const ITEMS_TARGET: TargetTable = {
  name: { schema: 'public', name: 'items' },
  columns: [
    { name: 'id', type: 'integer', generated: false },
    { name: 'name', type: 'text', generated: false },
  ],
  primaryKey: ['id'],
  uniqueKeys: [['id']],
};
