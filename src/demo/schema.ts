/**
 * The clinic of the older scripts, small: six tables on the clinic side (the
 * SQLite file standing in for SQL Server, with SQL Server's names) and on the
 * portal side (PGlite standing in for Supabase, with the portal's
 * snake_case names). cdc-sync maps PersonID ↔ person_id by itself.
 */
export const DEMO_TABLES = [
  { clinic: 'AlignerDoctors', portal: 'aligner_doctors', key: 'DrID' },
  { clinic: 'tblPatients', portal: 'patients', key: 'PersonID' },
  { clinic: 'tblWork', portal: 'work', key: 'WorkID' },
  { clinic: 'tblAlignerSets', portal: 'aligner_sets', key: 'AlignerSetID' },
  { clinic: 'tblAlignerBatches', portal: 'aligner_batches', key: 'AlignerBatchID' },
  { clinic: 'tblAlignerNotes', portal: 'aligner_notes', key: 'NoteID' },
] as const;

export const CLINIC_SCHEMA = `
CREATE TABLE IF NOT EXISTS AlignerDoctors (DrID INTEGER PRIMARY KEY, DoctorName TEXT NOT NULL, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tblPatients (PersonID INTEGER PRIMARY KEY, PatientName TEXT NOT NULL, Phone TEXT, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tblWork (WorkID INTEGER PRIMARY KEY, PersonID INTEGER NOT NULL REFERENCES tblPatients (PersonID),
  Kind TEXT NOT NULL, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tblAlignerSets (AlignerSetID INTEGER PRIMARY KEY, WorkID INTEGER NOT NULL REFERENCES tblWork (WorkID),
  DrID INTEGER NOT NULL REFERENCES AlignerDoctors (DrID), SetSequence INTEGER NOT NULL, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tblAlignerBatches (AlignerBatchID INTEGER PRIMARY KEY, AlignerSetID INTEGER NOT NULL REFERENCES tblAlignerSets (AlignerSetID),
  BatchSequence INTEGER NOT NULL, Days INTEGER, UpdatedAt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tblAlignerNotes (NoteID INTEGER PRIMARY KEY, AlignerSetID INTEGER NOT NULL REFERENCES tblAlignerSets (AlignerSetID),
  NoteText TEXT NOT NULL, UpdatedAt TEXT NOT NULL);
`;

export const PORTAL_SCHEMA = `
CREATE TABLE IF NOT EXISTS aligner_doctors (dr_id integer PRIMARY KEY, doctor_name text NOT NULL, updated_at text NOT NULL);
CREATE TABLE IF NOT EXISTS patients (person_id integer PRIMARY KEY, patient_name text NOT NULL, phone text, updated_at text NOT NULL);
CREATE TABLE IF NOT EXISTS work (work_id integer PRIMARY KEY, person_id integer NOT NULL REFERENCES patients, kind text NOT NULL, updated_at text NOT NULL);
CREATE TABLE IF NOT EXISTS aligner_sets (aligner_set_id integer PRIMARY KEY, work_id integer NOT NULL REFERENCES work,
  dr_id integer NOT NULL REFERENCES aligner_doctors, set_sequence integer NOT NULL, updated_at text NOT NULL);
CREATE TABLE IF NOT EXISTS aligner_batches (aligner_batch_id integer PRIMARY KEY, aligner_set_id integer NOT NULL REFERENCES aligner_sets,
  batch_sequence integer NOT NULL, days integer, updated_at text NOT NULL);
CREATE TABLE IF NOT EXISTS aligner_notes (note_id integer PRIMARY KEY, aligner_set_id integer NOT NULL REFERENCES aligner_sets,
  note_text text NOT NULL, updated_at text NOT NULL);
`;
