import { tableMatchKey } from '../core/target-match.js';
import type { Config } from './schema.js';

/** A configuration that runs but does not do what its streams suggest; `run` logs it, `validate` prints it. */
export interface ConfigWarning {
  path: string;
  message: string;
}

/**
 * A `supabase` sink and a `postgres-wal` source that read each other back: the
 * WAL stream reads the tables the other writes into the project and writes
 * into the database the other reads. Only a `supabase-realtime` source makes
 * such a pair two-way safe: the sink then writes each row's change time
 * and the portal keeps a newer row (cdc_sync.newer_wins), and the reverse
 * stream drops the sink's own writes (OwnWrites). A PostgREST write carries
 * no origin marker row, so the WAL stream sends the sink's writes back, and
 * nothing keeps a portal edit against an older change of the other side.
 * The project's REST URL and its database URL never match, so the pair is
 * found by its tables: a warning, not an error.
 */
function walBackFromSupabase(config: Config): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  config.streams.forEach((back, i) => {
    if (back.source.type !== 'postgres-wal') return;
    const read = new Set(back.tables.map((t) => tableMatchKey(t.source)));
    config.streams.forEach((forward, j) => {
      if (forward.sink.type !== 'supabase' || forward.source.url !== back.sink.url) return;
      const shared = forward.tables.map((t) => t.target || t.source).filter((t) => read.has(tableMatchKey(t)));
      if (shared.length === 0) return;
      warnings.push({
        path: `streams[${i}].source.type`,
        message:
          `streams[${i}] ("${back.name}") reads ${shared.join(', ')} with postgres-wal and writes into the database streams[${j}] ("${forward.name}") copies into Supabase: ` +
          'as a two-way pair, a portal edit is overwritten by an older change of the other side and the sink\'s writes come back as changes; ' +
          'for both ways read the portal with a supabase-realtime source (tombstones: true), see "Both ways with Supabase" in the README',
      });
    });
  });
  return warnings;
}

export function configWarnings(config: Config): ConfigWarning[] {
  return walBackFromSupabase(config);
}
