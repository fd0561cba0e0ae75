import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCliToEnd } from '../support/cli.js';

/**
 * The clinic example mixes SQL Server and Supabase set-up; `sqlcmd -i` fails
 * on PostgreSQL's part and `psql -f` on T-SQL's, so each database gets its own script.
 */
describe('cdc-sync init-sql --target / --out', () => {
  const env = { MSSQL_URL: 'mssql://sa:secret@db.local:1433/Clinic', SINK_URL: 'postgres://x:y@db.example/postgres' };
  const config = 'examples/clinic/cdc-sync.yaml';

  it('prints only the T-SQL for --target mssql and only PostgreSQL for --target supabase', async () => {
    const mssql = await runCliToEnd(['init-sql', '--config', config, '--target', 'mssql'], env);
    expect(mssql.code).toBe(0);
    expect(mssql.stdout).toContain('EXEC sys.sp_cdc_enable_db;');
    expect(mssql.stdout).toMatch(/^GO$/m);
    expect(mssql.stdout).not.toMatch(/\$\$|LANGUAGE plpgsql|CREATE OR REPLACE/);
    expect(mssql.stdout).not.toContain('secret');

    const supabase = await runCliToEnd(['init-sql', '--config', config, '--target', 'supabase'], env);
    expect(supabase.code).toBe(0);
    expect(supabase.stdout).toMatch(/LANGUAGE plpgsql/);
    expect(supabase.stdout).not.toMatch(/^GO$/m);
    expect(supabase.stdout).not.toMatch(/sp_cdc|sp_configure|\bEXEC sys\./);

    const postgres = await runCliToEnd(['init-sql', '--config', config, '--target', 'postgres'], env);
    expect(postgres.stdout).toBe('-- the configured streams need no postgres set-up\n');
    const wrong = await runCliToEnd(['init-sql', '--config', config, '--target', 'oracle'], env);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/Allowed choices are mssql, postgres, supabase, sqlite/);
  });

  it('writes one script per database with --out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-init-'));
    const result = await runCliToEnd(['init-sql', '--config', config, '--out', dir], env);
    expect(result.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['mssql.sql', 'supabase.sql']);
    expect(readFileSync(join(dir, 'mssql.sql'), 'utf8')).toContain('sp_cdc_enable_table');
    expect(readFileSync(join(dir, 'supabase.sql'), 'utf8')).not.toMatch(/^GO$/m);
  });
});
