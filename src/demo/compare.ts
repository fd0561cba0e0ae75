import type Database from 'better-sqlite3';
import { columnMatchKey } from '../core/names.js';
import type { Pool } from '../db/postgres/connection.js';
import { DEMO_TABLES } from './schema.js';

/** Row sets of every demo table on both sides, compared by column match keys (PersonID ~ person_id). */
export async function compareSides(clinic: Database.Database, portal: Pool): Promise<{ equal: boolean; detail: string }> {
  for (const table of DEMO_TABLES) {
    const normalize = (rows: Record<string, unknown>[]) =>
      rows
        .map((row) => JSON.stringify(Object.fromEntries(Object.entries(row).map(([k, v]) => [columnMatchKey(k), v === null ? null : String(v)]).sort())))
        .sort();
    const left = normalize(clinic.prepare(`SELECT * FROM ${table.clinic}`).all() as Record<string, unknown>[]);
    const right = normalize((await portal.query<Record<string, unknown>>(`SELECT * FROM ${table.portal}`)).rows);
    if (JSON.stringify(left) !== JSON.stringify(right)) {
      return { equal: false, detail: `${table.clinic} has ${left.length} rows, ${table.portal} ${right.length}` };
    }
  }
  return { equal: true, detail: '' };
}
