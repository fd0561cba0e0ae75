import { describe, expect, it } from 'vitest';
import { tableFromOpenApi } from '../../../src/db/supabase/introspect.js';

// Descriptions as PostgREST writes them (src/PostgREST/Response/OpenAPI.hs, makeProperty).
const DOCUMENT = {
  definitions: {
    child: {
      properties: {
        id: { format: 'integer', type: 'integer', description: 'Note:\nThis is a Primary Key.<pk/>' },
        parent_id: { format: 'integer', type: 'integer', description: "Note:\nThis is a Foreign Key to `parent.id`.<fk table='parent' column='id'/>" },
        note: { format: 'text', type: 'string' },
      },
    },
  },
};

describe('tableFromOpenApi', () => {
  it('reads columns, the primary key and the parents a foreign key names, so parents are written first', () => {
    const table = tableFromOpenApi(DOCUMENT, { schema: 'public', name: 'child' }, { source: 'c', target: 'public.child' });
    expect(table).toMatchObject({
      columns: [
        { name: 'id', type: 'integer' },
        { name: 'parent_id', type: 'integer' },
        { name: 'note', type: 'text' },
      ],
      primaryKey: ['id'],
      references: [{ schema: 'public', name: 'parent' }],
    });
  });

  it('says nothing of a table the document leaves out (not exposed, or not granted)', () => {
    expect(tableFromOpenApi(DOCUMENT, { schema: 'public', name: 'hidden' }, { source: 'h', target: 'public.hidden' })).toBeNull();
  });
});
