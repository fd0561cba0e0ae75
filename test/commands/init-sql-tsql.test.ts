import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCliToEnd, writeConfig } from '../support/cli.js';
import { tsqlSyntaxErrors } from '../support/tsql/tsql-grammar.js';

/**
 * The scripts `init-sql --target mssql` prints run as they are in sqlcmd or
 * SSMS, where one syntax error stops the set-up. They are checked against an
 * independent T-SQL grammar (test/support/tsql), as the stand-in checks every
 * statement cdc-sync sends at run time.
 */
describe('the T-SQL cdc-sync writes parses', () => {
  const env = { MSSQL_URL: 'mssql://sa:secret@db.local:1433/Clinic', SINK_URL: 'postgres://x:y@db.example/postgres' };

  it.each(['examples/clinic/cdc-sync.yaml', 'examples/mssql-queue-to-postgres.yaml'])('init-sql --target mssql for %s', async (config) => {
    const result = await runCliToEnd(['init-sql', '--config', config, '--target', 'mssql'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^GO$/m);
    expect(tsqlSyntaxErrors(result.stdout)).toEqual([]);
  });

  it('init-sql for tables whose names need quoting: spaces, a bracket, a quote, a composite key', async () => {
    const config = writeConfig(`streams:
  - name: queue
    source: { type: mssql-queue, url: "\${MSSQL_URL}" }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: "dbo.Order Lines", target: public.order_lines, key: ["Order Id", "Line]No"] }
      - { source: "sales.O'Brien", target: public.obrien, key: [id] }
  - name: cdc
    source: { type: mssql-cdc, url: "\${MSSQL_URL}" }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: "dbo.Order Lines", target: public.order_lines_cdc }
      - { source: "sales.O'Brien", target: public.obrien_cdc }
`);
    const result = await runCliToEnd(['init-sql', '--config', config, '--target', 'mssql'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('[Line]]No]');
    expect(result.stdout).toContain("N'O''Brien'");
    expect(tsqlSyntaxErrors(result.stdout)).toEqual([]);
  });

  it('sql/cdc/sync-queue.sql', () => {
    expect(tsqlSyntaxErrors(readFileSync('sql/cdc/sync-queue.sql', 'utf8'))).toEqual([]);
  });

  it('and the check itself refuses what SQL Server would: a misspelt keyword, a missing parenthesis, a MERGE without its ON', () => {
    expect(tsqlSyntaxErrors('SELECT 1 AS a;')).toEqual([]);
    expect(tsqlSyntaxErrors('SELEC 1 AS a;')).not.toEqual([]);
    expect(tsqlSyntaxErrors('SELECT * FROM OPENJSON(@rows WITH ([id] int) AS s;')).not.toEqual([]);
    expect(tsqlSyntaxErrors('MERGE INTO [dbo].[t] AS t USING (SELECT 1 AS id) AS s WHEN NOT MATCHED THEN INSERT ([id]) VALUES (s.[id]);')).not.toEqual([]);
  });
});
