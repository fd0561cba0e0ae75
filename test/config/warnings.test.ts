import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { configWarnings } from '../../src/config/warnings.js';
import { runCli, runCliToEnd, waitFor, writeConfig } from '../support/cli.js';

/** SQL Server to a Supabase project, and a stream back into SQL Server reading `back` (a source block). */
function pair(back: string, backTables = '[{ source: public.patients, target: dbo.Patients }]'): string {
  return `streams:
  - name: clinic-to-portal
    source: { type: mssql-cdc, url: "mssql://sa:pw@clinic/db" }
    sink: { type: supabase, url: "https://abc.supabase.co", key: service-key }
    tables: [{ source: dbo.Patients, target: public.patients }, { source: dbo.Visits }]
  - name: portal-to-clinic
    direction: reverse
    source: ${back}
    sink: { type: mssql, url: "mssql://sa:pw@clinic/db" }
    tables: ${backTables}
`;
}

const WAL_BACK = '{ type: postgres-wal, url: "postgres://postgres:pw@db.abc.supabase.co:5432/postgres" }';

describe('configuration warnings', () => {
  it('warns that postgres-wal reading back what a supabase sink writes is no two-way pair', () => {
    const warnings = configWarnings(parseConfig(pair(WAL_BACK), {}));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.path).toBe('streams[1].source.type');
    expect(warnings[0]!.message).toContain('streams[1] ("portal-to-clinic") reads public.patients with postgres-wal');
    expect(warnings[0]!.message).toContain('supabase-realtime');
  });

  it('matches an unnamed target as the sink does: ignoring schema, case and underscores', () => {
    const warnings = configWarnings(parseConfig(pair(WAL_BACK, '[{ source: public.visits, target: dbo.Visits }]'), {}));
    expect(warnings.map((w) => w.message)).toEqual([expect.stringContaining('reads dbo.Visits with postgres-wal')]);
  });

  it('says nothing of a supabase-realtime way back, or of a WAL stream reading other tables or writing elsewhere', () => {
    const realtime = '{ type: supabase-realtime, url: "https://abc.supabase.co", key: service-key, tombstones: true }';
    const realtimeBack = pair(realtime).replace('tables: [{ source: public.patients, target: dbo.Patients }]', 'tables: [{ source: public.patients, target: dbo.Patients, updatedAt: updated_at }]');
    expect(configWarnings(parseConfig(realtimeBack, {}))).toEqual([]);
    expect(configWarnings(parseConfig(pair(WAL_BACK, '[{ source: public.invoices, target: dbo.Invoices }]'), {}))).toEqual([]);
    const elsewhere = pair(WAL_BACK).replace('sink: { type: mssql, url: "mssql://sa:pw@clinic/db" }', 'sink: { type: mssql, url: "mssql://sa:pw@warehouse/db" }');
    expect(configWarnings(parseConfig(elsewhere, {}))).toEqual([]);
  });

  it('validate prints the warning and still accepts the file', async () => {
    const path = writeConfig(pair(WAL_BACK));
    const result = await runCliToEnd(['validate', '--offline', '--config', path]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('valid, checked the file only');
    expect(result.stderr).toContain('warning: streams[1].source.type: streams[1] ("portal-to-clinic") reads public.patients with postgres-wal');
  });

  it('run logs the warning at start, with the path of the stream', async () => {
    // Nothing to connect to: the streams retry while the warning is already out.
    const path = writeConfig(`${pair(WAL_BACK)}http: { port: 0, host: 127.0.0.1 }\n`);
    const cli = runCli(['run', '--config', path]);
    try {
      await waitFor(() => cli.logs.some((l) => l.level === 40 && l.path === 'streams[1].source.type'), 20_000, () => cli.stderr());
      const line = cli.logs.find((l) => l.path === 'streams[1].source.type')!;
      expect(line.msg).toContain('as a two-way pair, a portal edit is overwritten by an older change');
    } finally {
      cli.child.kill('SIGINT');
      await cli.exited;
    }
  });
});
