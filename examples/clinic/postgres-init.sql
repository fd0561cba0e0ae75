-- The clinic's tables on the cloud side (Supabase's PostgreSQL; a plain PostgreSQL 15 with
-- wal_level=logical stands in for it in docker-compose.yml, which runs this file once when
-- the database is created). Columns match the SQL Server tables by name ignoring case and
-- underscores (PersonID <-> person_id, workid <-> work_id), so the configuration needs no
-- column mapping. cdc-sync creates its own schema cdc_sync (checkpoints, dead letters).
CREATE TABLE IF NOT EXISTS public.aligner_doctors (
  dr_id         integer PRIMARY KEY,
  doctor_name   text NOT NULL,
  doctor_email  text,
  logo_path     text
);
CREATE TABLE IF NOT EXISTS public.patients (
  person_id      integer PRIMARY KEY,
  patient_name   text NOT NULL,
  first_name     text,
  last_name      text,
  phone          text,
  date_of_birth  date,
  date_added     timestamp(3)
);
CREATE TABLE IF NOT EXISTS public.work (
  work_id         integer PRIMARY KEY,
  person_id       integer NOT NULL REFERENCES public.patients (person_id),
  total_required  numeric(18,2),
  currency        text,
  typeofwork      integer,
  notes           text,
  finished        boolean NOT NULL DEFAULT false,
  addition_date   timestamp(3)
);
CREATE TABLE IF NOT EXISTS public.aligner_sets (
  aligner_set_id        integer PRIMARY KEY,
  work_id               integer NOT NULL REFERENCES public.work (work_id),
  aligner_dr_id         integer NOT NULL REFERENCES public.aligner_doctors (dr_id),
  set_sequence          integer NOT NULL,
  type                  text,
  upper_aligners_count  integer,
  lower_aligners_count  integer,
  days                  integer,
  is_active             boolean NOT NULL DEFAULT true,
  notes                 text,
  creation_date         timestamp(3)
);
CREATE TABLE IF NOT EXISTS public.aligner_batches (
  aligner_batch_id            integer PRIMARY KEY,
  aligner_set_id              integer NOT NULL REFERENCES public.aligner_sets (aligner_set_id),
  batch_sequence              integer NOT NULL,
  upper_aligner_count         integer,
  lower_aligner_count         integer,
  days                        integer,
  manufacture_date            date,
  delivered_to_patient_date   date,
  notes                       text,
  updated_at                  timestamptz NOT NULL DEFAULT now()   -- catch-up reads of the reverse stream
);
-- Notes created in the portal take ids below the clinic's (SQL Server numbers its own from 1,000,000).
CREATE SEQUENCE IF NOT EXISTS public.aligner_notes_portal_ids MAXVALUE 999999;
CREATE TABLE IF NOT EXISTS public.aligner_notes (
  note_id         integer PRIMARY KEY DEFAULT nextval('public.aligner_notes_portal_ids'),
  aligner_set_id  integer NOT NULL REFERENCES public.aligner_sets (aligner_set_id),
  note_type       text NOT NULL DEFAULT 'Lab',
  note_text       text NOT NULL,
  created_at      timestamp(3),
  is_edited       boolean NOT NULL DEFAULT false,
  edited_at       timestamp(3),
  updated_at      timestamptz NOT NULL DEFAULT now()   -- catch-up reads of the reverse stream
);
