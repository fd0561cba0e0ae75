-- The clinic's SQL Server tables (the six tables the older sync scripts synced), for the
-- local stack of docker-compose.yml. Idempotent: the one-shot job runs it on every `up`.
--   sqlcmd -C -I -b -S localhost -U sa -i examples/clinic/mssql-init.sql
-- Then, on the Clinic database: sql/cdc/*.sql and the output of `cdc-sync init-sql`.
IF DB_ID(N'Clinic') IS NULL CREATE DATABASE [Clinic];
GO
USE [Clinic];
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO
IF OBJECT_ID(N'[dbo].[AlignerDoctors]', N'U') IS NULL
CREATE TABLE [dbo].[AlignerDoctors] (
  DrID         int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_AlignerDoctors] PRIMARY KEY,
  DoctorName   nvarchar(100) NOT NULL,
  DoctorEmail  nvarchar(255) NULL,
  LogoPath     nvarchar(255) NULL
);
IF OBJECT_ID(N'[dbo].[tblPatients]', N'U') IS NULL
CREATE TABLE [dbo].[tblPatients] (
  PersonID     int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_tblPatients] PRIMARY KEY,
  PatientName  nvarchar(200) NOT NULL,
  FirstName    nvarchar(100) NULL,
  LastName     nvarchar(100) NULL,
  Phone        nvarchar(30) NULL,
  DateOfBirth  date NULL,
  DateAdded    datetime2(3) NOT NULL CONSTRAINT [DF_tblPatients_DateAdded] DEFAULT (SYSUTCDATETIME())
);
IF OBJECT_ID(N'[dbo].[tblWork]', N'U') IS NULL
CREATE TABLE [dbo].[tblWork] (
  workid         int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_tblWork] PRIMARY KEY,
  PersonID       int NOT NULL CONSTRAINT [FK_tblWork_tblPatients] REFERENCES [dbo].[tblPatients] (PersonID),
  TotalRequired  decimal(18,2) NULL,
  Currency       nvarchar(10) NULL,
  Typeofwork     int NULL,
  Notes          nvarchar(max) NULL,
  Finished       bit NOT NULL CONSTRAINT [DF_tblWork_Finished] DEFAULT (0),
  AdditionDate   datetime2(3) NOT NULL CONSTRAINT [DF_tblWork_AdditionDate] DEFAULT (SYSUTCDATETIME())
);
IF OBJECT_ID(N'[dbo].[tblAlignerSets]', N'U') IS NULL
CREATE TABLE [dbo].[tblAlignerSets] (
  AlignerSetID        int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_tblAlignerSets] PRIMARY KEY,
  WorkID              int NOT NULL CONSTRAINT [FK_tblAlignerSets_tblWork] REFERENCES [dbo].[tblWork] (workid),
  AlignerDrID         int NOT NULL CONSTRAINT [FK_tblAlignerSets_AlignerDoctors] REFERENCES [dbo].[AlignerDoctors] (DrID),
  SetSequence         int NOT NULL,
  Type                nvarchar(50) NULL,
  UpperAlignersCount  int NULL,
  LowerAlignersCount  int NULL,
  Days                int NULL,
  IsActive            bit NOT NULL CONSTRAINT [DF_tblAlignerSets_IsActive] DEFAULT (1),
  Notes               nvarchar(max) NULL,
  CreationDate        datetime2(3) NOT NULL CONSTRAINT [DF_tblAlignerSets_CreationDate] DEFAULT (SYSUTCDATETIME())
);
IF OBJECT_ID(N'[dbo].[tblAlignerBatches]', N'U') IS NULL
CREATE TABLE [dbo].[tblAlignerBatches] (
  AlignerBatchID          int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_tblAlignerBatches] PRIMARY KEY,
  AlignerSetID            int NOT NULL CONSTRAINT [FK_tblAlignerBatches_tblAlignerSets] REFERENCES [dbo].[tblAlignerSets] (AlignerSetID),
  BatchSequence           int NOT NULL,
  UpperAlignerCount       int NULL,
  LowerAlignerCount       int NULL,
  Days                    int NULL,
  ManufactureDate         date NULL,
  DeliveredToPatientDate  date NULL,
  Notes                   nvarchar(max) NULL
);
IF OBJECT_ID(N'[dbo].[tblAlignerNotes]', N'U') IS NULL
-- The clinic numbers its notes from 1,000,000; notes created in the portal take ids below that
-- (postgres-init.sql), which cdc-sync writes as given (identityInsert). An id at or above the
-- IDENTITY value would move SQL Server's counter, so cdc-sync refuses it (see README, "Into SQL Server").
CREATE TABLE [dbo].[tblAlignerNotes] (
  NoteID        int IDENTITY(1000000,1) NOT NULL CONSTRAINT [PK_tblAlignerNotes] PRIMARY KEY,
  AlignerSetID  int NOT NULL CONSTRAINT [FK_tblAlignerNotes_tblAlignerSets] REFERENCES [dbo].[tblAlignerSets] (AlignerSetID),
  NoteType      nvarchar(20) NOT NULL CONSTRAINT [DF_tblAlignerNotes_NoteType] DEFAULT (N'Lab'),
  NoteText      nvarchar(max) NOT NULL,
  CreatedAt     datetime2(3) NOT NULL CONSTRAINT [DF_tblAlignerNotes_CreatedAt] DEFAULT (SYSUTCDATETIME()),
  IsEdited      bit NOT NULL CONSTRAINT [DF_tblAlignerNotes_IsEdited] DEFAULT (0),
  EditedAt      datetime2(3) NULL
);
GO
-- A little data, so the dashboard shows a snapshot and changes right away.
IF NOT EXISTS (SELECT 1 FROM [dbo].[AlignerDoctors])
BEGIN
  INSERT INTO [dbo].[AlignerDoctors] (DoctorName, DoctorEmail) VALUES (N'Dr. Rana Haddad', N'rana@example.com'), (N'Dr. Omar Saleh', N'omar@example.com');
  INSERT INTO [dbo].[tblPatients] (PatientName, FirstName, LastName, Phone, DateOfBirth)
    VALUES (N'Lina Karim', N'Lina', N'Karim', N'+961 1 000 001', '1990-04-12'), (N'Sami Aoun', N'Sami', N'Aoun', NULL, '1985-11-30');
  INSERT INTO [dbo].[tblWork] (PersonID, TotalRequired, Currency, Typeofwork, Notes) VALUES (1, 2500.00, N'USD', 19, N'Aligners'), (2, 1800.50, N'USD', 19, NULL);
  INSERT INTO [dbo].[tblAlignerSets] (WorkID, AlignerDrID, SetSequence, Type, UpperAlignersCount, LowerAlignersCount, Days)
    VALUES (1, 1, 1, N'Full', 20, 18, 10), (2, 2, 1, N'Lite', 12, 12, 14);
  INSERT INTO [dbo].[tblAlignerBatches] (AlignerSetID, BatchSequence, UpperAlignerCount, LowerAlignerCount, Days, ManufactureDate)
    VALUES (1, 1, 5, 5, 10, '2026-01-05'), (1, 2, 5, 5, 10, NULL), (2, 1, 6, 6, 14, '2026-02-01');
  INSERT INTO [dbo].[tblAlignerNotes] (AlignerSetID, NoteType, NoteText) VALUES (1, N'Lab', N'Attachments on 13 and 23.');
END
GO
