import type { SupabaseClient } from '@supabase/supabase-js';
import { ConfigError, TransientError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { RealtimeTable } from './realtime-tables.js';

/** A read of no rows of each table, with every column the source and its configuration use. */
export async function checkTables(client: SupabaseClient, tables: RealtimeTable[], configuredTables: TableConfig[], stream: string): Promise<void> {
  for (const [i, table] of tables.entries()) {
    // Every column the configuration names must exist, as for every source type (checkSourceColumns).
    const configured = configuredTables[i]!;
    const named = [...Object.keys(configured.columns ?? {}), ...(configured.exclude ?? [])];
    const columns = [...new Set([...table.key, table.updatedAt, ...(table.softDelete ? [table.softDelete] : []), ...named])].join(',');
    const { error, status } = await client.schema(table.schema).from(table.name).select(columns).limit(0);
    if (error && /^(42P01|PGRST205|42703|PGRST204|PGRST106)$/.test(error.code ?? '')) {
      throw new ConfigError(`tables[${i}].source: ${table.source}: ${error.message}`);
    }
    // Tables in public on current Supabase projects are granted to no API role, service_role included.
    if (error?.code === '42501') {
      throw new ConfigError(
        `tables[${i}].source: ${table.source}: ${error.message}; run GRANT SELECT ON ${table.schema}.${table.name} TO service_role (\`cdc-sync init-sql --target supabase\` prints it)`,
      );
    }
    // At start a refused key is the configuration's fault (a wrong or anon key); never retried in silence.
    if (error && (status === 401 || status === 403) && !/^[0-9A-Z]{5}$/.test(error.code ?? '')) {
      throw new ConfigError(`source.key: Supabase refused the key (HTTP ${status}: ${error.message}); use the project's service-role key`);
    }
    if (error) throw new TransientError(`Supabase did not answer: ${error.message}`, { context: { stream, table: table.source } });
  }
}
