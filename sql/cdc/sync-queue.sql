-- cdc-sync: the dbo.SyncQueue table of the mssql-queue source. Idempotent: safe to run again.
-- Compatible with the SyncQueue of the older sync scripts (same columns, statuses
-- Pending / Synced / Failed); adds the lease and retry columns cdc-sync needs.
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO
IF OBJECT_ID(N'[dbo].[SyncQueue]', N'U') IS NULL
CREATE TABLE [dbo].[SyncQueue] (
  QueueID       int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_SyncQueue] PRIMARY KEY CLUSTERED,
  TableName     nvarchar(100) NOT NULL,
  RecordID      nvarchar(450) NULL,           -- the key value, or a JSON array of the values of a composite key
  Operation     nvarchar(10) NOT NULL,        -- INSERT / UPDATE / DELETE
  JsonData      nvarchar(max) NULL,           -- the row image (FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)
  Status        nvarchar(20) NOT NULL CONSTRAINT [DF_SyncQueue_Status] DEFAULT (N'Pending'),
  Attempts      int NOT NULL CONSTRAINT [DF_SyncQueue_Attempts] DEFAULT (0),
  LastError     nvarchar(max) NULL,
  CreatedAt     datetime2 NOT NULL CONSTRAINT [DF_SyncQueue_CreatedAt] DEFAULT (SYSUTCDATETIME()),
  LastAttempt   datetime2 NULL,
  NextAttemptAt datetime2 NULL,               -- not claimed again before this time (after a failure)
  LockedBy      nvarchar(200) NULL,           -- the reader holding the row ...
  LockedUntil   datetime2 NULL                -- ... until then; a reader that died loses it then
);
GO
-- The older scripts' table gets what it lacks.
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'Attempts') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD Attempts int NOT NULL CONSTRAINT [DF_SyncQueue_Attempts] DEFAULT (0);
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'LastError') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD LastError nvarchar(max) NULL;
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'CreatedAt') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD CreatedAt datetime2 NOT NULL CONSTRAINT [DF_SyncQueue_CreatedAt] DEFAULT (SYSUTCDATETIME());
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'LastAttempt') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD LastAttempt datetime2 NULL;
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'NextAttemptAt') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD NextAttemptAt datetime2 NULL;
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'LockedBy') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD LockedBy nvarchar(200) NULL;
IF COL_LENGTH(N'[dbo].[SyncQueue]', N'LockedUntil') IS NULL ALTER TABLE [dbo].[SyncQueue] ADD LockedUntil datetime2 NULL;
GO
-- RecordID holds JSON arrays for composite keys and is an index key: the older
-- table may declare it as int, short text or nvarchar(max). (This fails while
-- another index uses RecordID, or a value is longer than 450: fix those first.)
IF EXISTS (SELECT 1 FROM sys.columns WHERE object_id = OBJECT_ID(N'[dbo].[SyncQueue]') AND name = N'RecordID'
              AND (system_type_id <> TYPE_ID(N'nvarchar') OR max_length = -1 OR max_length < 900))
  ALTER TABLE [dbo].[SyncQueue] ALTER COLUMN RecordID nvarchar(450) NULL;
GO
-- Claiming: Pending rows in QueueID order. Not a filtered index (WHERE Status =
-- N'Pending'): a filtered index makes every INSERT fail in sessions with
-- non-default SET options (ANSI_WARNINGS, ARITHABORT...), and the inserts come
-- from the application's own transactions through the triggers.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'[dbo].[SyncQueue]') AND name = N'IX_SyncQueue_Claim')
  CREATE INDEX [IX_SyncQueue_Claim] ON [dbo].[SyncQueue] (Status, QueueID)
    INCLUDE (TableName, RecordID, NextAttemptAt, LockedUntil, LockedBy, Attempts, CreatedAt);
-- Per-record order: is an earlier change of this record still pending?
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'[dbo].[SyncQueue]') AND name = N'IX_SyncQueue_Record')
  CREATE INDEX [IX_SyncQueue_Record] ON [dbo].[SyncQueue] (TableName, RecordID, QueueID) INCLUDE (Status);
GO
