import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { enableCdcSql, queueTriggerSql, syncQueueSql, triggerName } from '../../../src/db/mssql/queue-setup.js';
import { initSql } from '../../../src/commands/init-sql.js';
import { parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/core/errors.js';

/** The batches of a script, as sqlcmd splits it at GO lines. */
const batches = (script: string) => script.split(/^GO$/m).map((b) => b.trim()).filter(Boolean);

describe('SyncQueue set-up', () => {
  it('ships sql/cdc/sync-queue.sql exactly as init-sql generates it for dbo.SyncQueue', () => {
    expect(readFileSync('sql/cdc/sync-queue.sql', 'utf8')).toBe(syncQueueSql('dbo.SyncQueue'));
  });

  it('creates the table only when missing, with the older columns and the lease columns', () => {
    const sql = syncQueueSql();
    expect(sql).toContain("IF OBJECT_ID(N'[dbo].[SyncQueue]', N'U') IS NULL\nCREATE TABLE [dbo].[SyncQueue]");
    for (const column of ['QueueID       int IDENTITY(1,1)', 'TableName', 'RecordID', 'Operation', 'JsonData', "DEFAULT (N'Pending')", 'Attempts', 'LastError', 'CreatedAt', 'LastAttempt']) {
      expect(sql).toContain(column);
    }
    // An existing table gets each missing column, one guarded ALTER at a time.
    for (const column of ['NextAttemptAt', 'LockedBy', 'LockedUntil', 'Attempts', 'LastAttempt']) {
      expect(sql).toMatch(new RegExp(`IF COL_LENGTH\\(N'\\[dbo\\]\\.\\[SyncQueue\\]', N'${column}'\\) IS NULL ALTER TABLE \\[dbo\\]\\.\\[SyncQueue\\] ADD ${column} `));
    }
    expect(sql).toMatch(/CREATE INDEX \[IX_SyncQueue_Claim\] ON \[dbo\]\.\[SyncQueue\] \(Status, QueueID\)/);
    expect(sql).toMatch(/IF NOT EXISTS \(SELECT 1 FROM sys\.indexes .* N'IX_SyncQueue_Record'\)/);
    // Columns added by ALTER are referenced only in later batches.
    const list = batches(sql);
    const alters = list.findIndex((b) => b.includes("N'LockedBy') IS NULL ALTER TABLE"));
    const index = list.findIndex((b) => b.includes('CREATE INDEX [IX_SyncQueue_Claim]'));
    expect(alters).toBeGreaterThan(0);
    expect(index).toBeGreaterThan(alters);
  });

  it('names constraints and indexes after a configured queue table', () => {
    const sql = syncQueueSql('sync.Outbox');
    expect(sql).toContain('CREATE TABLE [sync].[Outbox]');
    expect(sql).toContain('CONSTRAINT [PK_Outbox] PRIMARY KEY');
    expect(sql).toContain('CREATE INDEX [IX_Outbox_Claim]');
  });
});

describe('SyncQueue triggers', () => {
  it('queues inserts, updates and deletes as JSON, and nothing for cdc-sync sessions', () => {
    const sql = queueTriggerSql({ source: 'dbo.tblPatients', key: ['PersonID'] });
    expect(sql).toContain('CREATE OR ALTER TRIGGER [dbo].[trg_sync_tblPatients] ON [dbo].[tblPatients]\nAFTER INSERT, UPDATE, DELETE');
    expect(sql).toContain("IF SESSION_CONTEXT(N'cdc_sync.origin') IS NOT NULL RETURN;");
    // The image comes from the table after every other AFTER trigger ran (ours fires last), not from inserted.
    expect(sql).toContain('(SELECT b.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)');
    expect(sql).toContain('FROM inserted AS i JOIN [dbo].[tblPatients] AS b ON b.[PersonID] = i.[PersonID];');
    for (const type of ['INSERT', 'UPDATE', 'DELETE']) {
      expect(sql).toContain(`EXEC sys.sp_settriggerorder @triggername = N'dbo.trg_sync_tblPatients', @order = N'Last', @stmttype = N'${type}';`);
    }
    expect(sql).toContain("N'DELETE', (SELECT d.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)");
    expect(sql).toContain("CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE d.[PersonID] = i.[PersonID]) THEN N'UPDATE' ELSE N'INSERT' END");
    expect(sql).toContain("SELECT N'dbo.tblPatients', CONVERT(nvarchar(450), i.[PersonID]),");
    // The echo check comes before anything is written.
    expect(sql.indexOf('SESSION_CONTEXT')).toBeLessThan(sql.indexOf('INSERT INTO [dbo].[SyncQueue]'));
    // CREATE TRIGGER starts its batch.
    expect(batches(sql).some((b) => b.startsWith('CREATE OR ALTER TRIGGER'))).toBe(true);
  });

  it('matches composite keys on every column and writes RecordID as a JSON array of the key values', () => {
    const sql = queueTriggerSql({ source: 'sales.OrderLines', key: ['OrderID', 'LineNo'] }, 'dbo.SyncQueue');
    expect(sql).toContain('WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE d.[OrderID] = i.[OrderID] AND d.[LineNo] = i.[LineNo])');
    expect(sql).toContain("LEFT(N'[' + SUBSTRING((SELECT i.[OrderID] AS [v] FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES), 6,");
    expect(sql).toContain("+ N',' + SUBSTRING((SELECT i.[LineNo] AS [v]");
    expect(sql).toContain("N']', 450)");
    expect(sql).toContain('CREATE OR ALTER TRIGGER [sales].[trg_sync_OrderLines] ON [sales].[OrderLines]');
  });

  it("quotes names containing ] and ' and refuses names it cannot write", () => {
    const sql = queueTriggerSql({ source: "dbo.we]ird'name", key: ['I]d'] });
    expect(sql).toContain("CREATE OR ALTER TRIGGER [dbo].[trg_sync_we]]ird'name] ON [dbo].[we]]ird'name]");
    expect(sql).toContain('d.[I]]d] = i.[I]]d]');
    expect(sql).toContain("SELECT N'dbo.we]ird''name',");
    expect(triggerName('dbo.tblWork')).toBe('trg_sync_tblWork');
    expect(() => queueTriggerSql({ source: 'dbo.bad\u0001name', key: ['Id'] })).toThrow(ConfigError);
    expect(() => queueTriggerSql({ source: 'dbo.t', key: [] }, 'dbo.SyncQueue', 'streams[0].tables[2]')).toThrow(/streams\[0\]\.tables\[2\]\.key: name the key columns/);
  });
});

describe('init-sql for SQL Server streams', () => {
  const config = (type: string, key = 'key: [PersonID]') =>
    parseConfig(`
streams:
  - name: clinic
    source: { type: ${type}, url: "mssql://sa:secret@db.local:1433/Clinic" }
    sink: { type: postgres, url: postgres://x/y }
    tables:
      - { source: dbo.tblPatients, target: public.patients, ${key} }
`);

  it('prints the SyncQueue script and one trigger per table for mssql-queue, without the password', () => {
    const sql = initSql(config('mssql-queue'));
    expect(sql).toContain('CREATE TABLE [dbo].[SyncQueue]');
    expect(sql).toContain('CREATE OR ALTER TRIGGER [dbo].[trg_sync_tblPatients]');
    expect(sql).toContain('mssql://db.local:1433/Clinic');
    expect(sql).not.toContain('secret');
  });

  it('asks for the key columns of a table whose trigger it must write', () => {
    expect(() => initSql(config('mssql-queue', ''))).toThrow(/streams\[0\]\.tables\[0\]\.key: name the key columns of dbo\.tblPatients/);
  });

  it('prints an idempotent enable-CDC script for mssql-cdc', () => {
    const sql = initSql(config('mssql-cdc', ''));
    expect(sql).toContain('IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE database_id = DB_ID() AND is_cdc_enabled = 1)\n  EXEC sys.sp_cdc_enable_db;');
    expect(sql).toContain("OBJECT_ID(N'[dbo].[tblPatients]') AND is_tracked_by_cdc = 1)");
    expect(sql).toContain("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'tblPatients',");
    expect(sql).toContain('@supports_net_changes = 0');
    // Captured LOB values over 64 KiB would otherwise fail the application's own writes (error 7139).
    expect(sql).toContain("EXEC sys.sp_configure N'max text repl size', -1;\nRECONFIGURE;");
    // Two tables, plus the origin marker the reverse stream's sink writes (echo suppression).
    expect(enableCdcSql(['a.b', 'c']).match(/sp_cdc_enable_table/g)).toHaveLength(3);
    expect(enableCdcSql(['c'])).toContain("@source_schema = N'cdc_sync', @source_name = N'origin_marker'");
  });
});
