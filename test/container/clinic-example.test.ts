import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { FakeCdc, type FakeColumn, type Row } from '../support/fake-mssql/fake-cdc.js';
import { FakeSqlServer } from '../support/fake-mssql/fake-server.js';
import { metricValue, runCli, waitFor, writeConfig, type CliProcess } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * The clinic example the compose stack runs (examples/clinic/): its SQL Server
 * tables (mssql-init.sql, read back from the file), its PostgreSQL tables
 * (postgres-init.sql, applied to a real PostgreSQL 15) and its configuration
 * (cdc-sync.yaml) fit together: the real CLI copies and streams all six tables.
 * SQL Server cannot run here; the driver stand-in of the mssql-cdc tests
 * (CDC_SYNC_MSSQL_DRIVER) answers from a FakeCdc holding the tables of mssql-init.sql.
 */
const DRIVER = resolve('dist/test/support/fake-mssql/driver.js');

interface SqlServerTable {
  name: string;
  columns: FakeColumn[];
  key: string[];
}

/** The CREATE TABLE statements of mssql-init.sql: column names, type names, primary key. */
function sqlServerTables(): SqlServerTable[] {
  const text = readFileSync('examples/clinic/mssql-init.sql', 'utf8');
  return [...text.matchAll(/CREATE TABLE \[dbo\]\.\[(\w+)\] \(\n([\s\S]*?)\n\);/g)].map(([, name, body]) => {
    const lines = body!.split('\n').map((l) => l.trim()).filter(Boolean);
    const columns = lines.map((l) => {
      const [column, type] = l.split(/\s+/);
      return { name: column!, type: type!.replace(/\(.*$/, '').replace(/,$/, '') };
    });
    const key = lines.filter((l) => l.includes('PRIMARY KEY')).map((l) => l.split(/\s+/)[0]!);
    return { name: name!, columns, key };
  });
}

/** One row of a table: every int 1 (so every foreign key points at row 1 of its parent). */
function firstRow(table: SqlServerTable): Row {
  const value = (type: string, column: string): unknown => {
    if (type === 'int') return 1;
    if (type === 'bit') return true;
    if (type === 'decimal') return '2500.50';
    if (type === 'date') return '2026-01-05';
    if (type === 'datetime2') return '2026-01-05T10:11:12.123';
    return `${column} 1`;
  };
  return Object.fromEntries(table.columns.map((c) => [c.name, value(c.type, c.name)]));
}

const normalize = (name: string) => name.toLowerCase().replace(/_/g, '');

let server: FakeSqlServer;
let cdc: FakeCdc;
let pg: TestDatabase;
let cli: CliProcess | undefined;
const tables = sqlServerTables();
const config = parse(readFileSync('examples/clinic/cdc-sync.yaml', 'utf8')) as { streams: { tables: { source: string; target: string }[] }[] };
const mappings = config.streams[0]!.tables;

beforeAll(async () => {
  server = new FakeSqlServer();
  cdc = new FakeCdc(server);
  for (const t of tables) {
    cdc.createTable('dbo', t.name, t.columns, t.key);
    cdc.enableTable('dbo', t.name);
  }
  pg = await createTestDatabase('clinic');
  await pg.query(readFileSync('examples/clinic/postgres-init.sql', 'utf8'));
});

afterAll(async () => {
  if (cli && cli.child.exitCode === null) {
    cli.child.kill('SIGKILL');
    await cli.exited;
  }
  await server?.close();
  await pg?.drop();
});

describe('examples/clinic', () => {
  it('mssql-init.sql and postgres-init.sql have the six tables of the configuration with matching columns', async () => {
    expect(tables.map((t) => t.name)).toEqual(['AlignerDoctors', 'tblPatients', 'tblWork', 'tblAlignerSets', 'tblAlignerBatches', 'tblAlignerNotes']);
    expect(mappings.map((m) => m.source)).toEqual(tables.map((t) => `dbo.${t.name}`));
    for (const t of tables) expect(t.key, t.name).toHaveLength(1);
    // Applying postgres-init.sql again is harmless (the compose volume may already hold the tables).
    await pg.query(readFileSync('examples/clinic/postgres-init.sql', 'utf8'));
    const columns = await pg.query<{ table_name: string; column_name: string }>(
      `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`,
    );
    for (const mapping of mappings) {
      const source = tables.find((t) => `dbo.${t.name}` === mapping.source)!;
      // updated_at exists only on the portal side, for the reverse stream's catch-up reads.
      const target = columns.filter((c) => `public.${c.table_name}` === mapping.target && c.column_name !== 'updated_at').map((c) => normalize(c.column_name));
      expect(target, mapping.target).toEqual(source.columns.map((c) => normalize(c.name)));
    }
  });

  it('the real CLI with examples/clinic/cdc-sync.yaml copies the six tables, then streams changes', async () => {
    cdc.commit(tables.map((t) => ({ table: `dbo.${t.name}`, op: 'insert' as const, row: firstRow(t) })));
    const text = readFileSync('examples/clinic/cdc-sync.yaml', 'utf8');
    expect(text).toContain('http: { port: 9464 }');
    // Only the port differs: 9464 may be taken on a shared machine.
    const path = writeConfig(text.replace('http: { port: 9464 }', 'http: { port: 0, host: 127.0.0.1 }'));
    cli = runCli(['run', '--config', path], { MSSQL_URL: await server.listen(), SINK_URL: pg.url, CDC_SYNC_MSSQL_DRIVER: DRIVER, REVERSE_SYNC_ENABLED: 'false' });
    const count = async (table: string) => Number((await pg.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0]!.n);
    const copied = async () => (await Promise.all(mappings.map((m) => count(m.target)))).every((n) => n === 1);
    await waitFor(copied, 30_000, () => cli!.stderr());

    cdc.commit([
      { table: 'dbo.tblAlignerBatches', op: 'update', row: { AlignerBatchID: 1, Days: 12 } },
      { table: 'dbo.tblAlignerNotes', op: 'insert', row: { ...firstRow(tables.at(-1)!), NoteID: 2, NoteText: 'second note', IsEdited: false } },
    ]);
    await waitFor(async () => (await count('public.aligner_notes')) === 2, 30_000, () => cli!.stderr());
    expect(await pg.query('SELECT aligner_batch_id, days, manufacture_date::text FROM public.aligner_batches')).toEqual([
      { aligner_batch_id: 1, days: 12, manufacture_date: '2026-01-05' },
    ]);
    expect(await pg.query('SELECT person_id, patient_name, date_added::text FROM public.patients')).toEqual([
      { person_id: 1, patient_name: 'PatientName 1', date_added: '2026-01-05 10:11:12.123' },
    ]);
    expect(await pg.query('SELECT work_id, total_required::text, finished FROM public.work')).toEqual([{ work_id: 1, total_required: '2500.50', finished: true }]);
    expect(await pg.query('SELECT note_id, note_text, is_edited FROM public.aligner_notes ORDER BY 1')).toEqual([
      { note_id: 1, note_text: 'NoteText 1', is_edited: true },
      { note_id: 2, note_text: 'second note', is_edited: false },
    ]);
    const metrics = await cli.metrics();
    expect(metricValue(metrics, 'cdc_sync_connected', { stream: 'clinic-to-cloud', direction: 'forward' })).toBe(1);
    expect(metricValue(metrics, 'cdc_sync_events_failed_total', { table: 'dbo.tblAlignerNotes', reason: 'constraint' })).toBe(0);

    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });
});
