import { writeConfig } from './cli.js';

/** The `items` table of the two-way PostgreSQL tests: the updated-at column is there for the column rule. */
export const TWO_WAY_ITEMS_SQL = `CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`;

/**
 * Two streams both ways between the databases `${A_URL}` and `${B_URL}`: A
 * read by `aSource` (a source block without its url), B by its change log.
 * `tableOptions` go into both streams' table entries.
 */
export function twoWayItemsConfig(aSource: string, tableOptions: string): string {
  const tables = `[{ source: public.items, target: public.items${tableOptions} }]`;
  return writeConfig(`
streams:
  - name: a-to-b
    source: { url: "\${A_URL}", ${aSource} }
    sink: { type: postgres, url: "\${B_URL}" }
    tables: ${tables}
    batch: { maxSize: 200, maxWaitMs: 20 }
  - name: b-to-a
    direction: reverse
    source: { type: postgres-changelog, url: "\${B_URL}", snapshot: never, idleIntervalMs: 20 }
    sink: { type: postgres, url: "\${A_URL}" }
    tables: ${tables}
    batch: { maxSize: 200, maxWaitMs: 20 }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
}
