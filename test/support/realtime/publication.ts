// The publication that decides which tables Realtime serves. A Supabase project starts with an
// empty `supabase_realtime` publication; "enabling Realtime" for a table adds it there
// (supabase/realtime list_changes.sql reads pg_publication_tables of that publication).
import { createSupabaseRoles } from '../supabase-roles.js';
import pg from 'pg';

async function withClient<T>(databaseUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** `schema.table` or `table` (public) → quoted qualified name. */
function qualified(table: string): string {
  const dot = table.indexOf('.');
  const [schema, name] = dot < 0 ? ['public', table] : [table.slice(0, dot), table.slice(dot + 1)];
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
}

/** Creates the publication (empty) unless it exists. */
export async function ensurePublication(databaseUrl: string, publication = 'supabase_realtime'): Promise<void> {
  await withClient(databaseUrl, async (client) => {
    // Changes are shaped per subscriber's role (anon, authenticated, service_role): the roles must exist.
    await createSupabaseRoles(client);
    const { rowCount } = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
    if (!rowCount) await client.query(`CREATE PUBLICATION ${pg.escapeIdentifier(publication)}`);
  });
}

export interface PublishOptions {
  publication?: string;
  /** ALTER TABLE … REPLICA IDENTITY FULL: old_record then holds every column, not just the key. */
  replicaIdentityFull?: boolean;
}

/** Adds tables to the publication (creating it if needed), like `ALTER PUBLICATION supabase_realtime ADD TABLE …`. */
export async function publishTables(databaseUrl: string, tables: string[], options: PublishOptions = {}): Promise<void> {
  const publication = options.publication ?? 'supabase_realtime';
  await ensurePublication(databaseUrl, publication);
  await withClient(databaseUrl, async (client) => {
    for (const table of tables) {
      const name = qualified(table);
      const { rowCount } = await client.query(
        `SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = $1 AND r.prrelid = $2::regclass`,
        [publication, name],
      );
      if (!rowCount) await client.query(`ALTER PUBLICATION ${pg.escapeIdentifier(publication)} ADD TABLE ${name}`);
      if (options.replicaIdentityFull) await client.query(`ALTER TABLE ${name} REPLICA IDENTITY FULL`);
    }
  });
}
