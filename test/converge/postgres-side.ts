import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { changelogSetupSql } from '../../src/cdc/postgres/changelog-setup.js';
import { createPool, type Pool } from '../../src/db/postgres/connection.js';
import { createTestDatabase, type PgServer } from '../support/test-database.js';
import type { Edit, ParentValues } from './history.js';
import { imageChange, inRange, snapshotOf, SPAN, stepApart, type Side, type Snapshot, type UserChange, type Write } from './sides.js';

const PG_SCHEMA = `
CREATE TABLE parent (id int PRIMARY KEY, name text, qty bigint, at timestamp(3), flag boolean, data bytea, doc jsonb);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY IMMEDIATE, note text);
-- Every row write, whoever makes it: the measure of echoes and write storms. SECURITY DEFINER:
-- a writer through Supabase's API (service_role) has no grant on the harness's table.
CREATE TABLE write_log (n bigint GENERATED ALWAYS AS IDENTITY, tbl text, id int, detail text);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  INSERT INTO write_log (tbl, id, detail)
  VALUES (TG_TABLE_NAME, coalesce(NEW.id, OLD.id),
          concat_ws(' ', TG_OP, 'by', coalesce(nullif(current_setting('cdc_sync.origin', true), ''),
                                         nullif(current_setting('request.headers', true), '')::json ->> 'x-cdc-sync-origin', 'the application'),
                    'in transaction', pg_current_xact_id(), 'at', clock_timestamp(), 'row', to_jsonb(coalesce(NEW, OLD)) - 'id'));
  RETURN NULL;
END $$;
CREATE TRIGGER log_write AFTER INSERT OR UPDATE OR DELETE ON parent FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_write AFTER INSERT OR UPDATE OR DELETE ON child FOR EACH ROW EXECUTE FUNCTION log_write();`;

/**
 * For pairs under `conflict: newer-wins` with `updatedAt: updated_at`: the column as an application keeps it, the time
 * of its own last write; a row cdc-sync writes (its origin marker set) keeps the time it brings, so both sides agree.
 */
const UPDATED_AT_SCHEMA = `
ALTER TABLE parent ADD COLUMN updated_at timestamptz NOT NULL DEFAULT clock_timestamp();
ALTER TABLE child ADD COLUMN updated_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('cdc_sync.origin', true), '') = '' THEN NEW.updated_at := clock_timestamp(); END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON parent FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON child FOR EACH ROW EXECUTE FUNCTION touch();`;

const PG_AT = `(timestamp '1970-01-01' + $4::bigint * interval '1 millisecond')`;

/** The side's database for reading (snapshots, change log, counts). */
interface SideDatabase {
  name: string;
  url: string;
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/** Runs statements of one transaction on one connection; returns rows affected. */
type Statement = (sql: string, params: unknown[]) => Promise<number>;

/** The application's connection for edits. */
interface Sessions {
  run<T>(work: (q: Statement) => Promise<T>): Promise<T>;
  reconnect(): Promise<void>;
  close(): Promise<void>;
}

/** A server: one connection kept open (and opened again after a restart). */
function serverSessions(url: string, client: pg.Client): Sessions {
  return {
    run: (work) => work(async (sql, params) => (await client.query(sql, params)).rowCount ?? 0),
    async reconnect() {
      await client.end().catch(() => {});
      client = await connect(url);
    },
    close: () => client.end(),
  };
}

/** PGlite: its one connection is taken for each transaction only, so cdc-sync (in this process) gets it in between. */
function pgliteSessions(pool: Pool): Sessions {
  return {
    async run(work) {
      const client = await pool.connect();
      try {
        return await work(async (sql, params) => (await client.query(sql, params)).rowCount ?? 0);
      } finally {
        client.release();
      }
    },
    reconnect: async () => {},
    close: async () => {},
  };
}

export class PostgresSide implements Side {
  private constructor(
    readonly label: string,
    private readonly db: SideDatabase,
    private readonly sessions: Sessions,
    readonly wal: boolean,
    private readonly spaced = false,
  ) {}

  /**
   * `wal`: the stream reads this side's WAL (postgres-wal); `portal`: a
   * Supabase project's database (see supabase-side.ts). The change-log
   * triggers are set up anyway, only as the record of the application's
   * edits the expected outcome is worked out from.
   */
  static async create(label: string, options: { wal?: boolean; portal?: boolean; updatedAt?: boolean; server?: PgServer } = {}): Promise<PostgresSide> {
    const db = await createTestDatabase(`converge_${label}`, options.server);
    await db.query(PG_SCHEMA);
    if (options.updatedAt) await db.query(UPDATED_AT_SCHEMA);
    // A Supabase portal's tables carry the updated-at column its catch-up reads need (the trigger init-sql prints keeps it).
    if (options.portal) for (const t of ['parent', 'child']) await db.query(`ALTER TABLE ${t} ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()`);
    if (options.wal || options.portal) await db.query(changelogSetupSql(['public.parent', 'public.child']));
    return new PostgresSide(label, db, serverSessions(db.url, await connect(db.url)), options.wal ?? false, options.updatedAt ?? false);
  }

  /** The database's URL, for stand-ins that serve it (PostgREST, Realtime). */
  get url(): string {
    return this.db.url;
  }

  /** An embedded PGlite database in a new directory; cdc-sync must run in this process (InProcessRunner). */
  static async createPglite(label: string): Promise<PostgresSide> {
    const dir = mkdtempSync(join(tmpdir(), `cdc-sync-converge-${label}-`));
    const url = `pglite:${dir}`;
    const pool = createPool(url);
    const db: SideDatabase = {
      name: label,
      url,
      query: async <T>(sql: string, params?: unknown[]) => (await pool.query(sql, params)).rows as T[],
      async drop() {
        await pool.end();
        rmSync(dir, { recursive: true, force: true });
      },
    };
    await db.query(PG_SCHEMA);
    return new PostgresSide(label, db, pgliteSessions(pool), false);
  }

  async reconnect(): Promise<void> {
    await this.sessions.reconnect();
  }

  source(): string {
    if (this.wal) return `{ type: postgres-wal, url: "${this.db.url}", slot: cdc_sync_${this.db.name}, publication: cdc_sync_${this.db.name} }`;
    return `{ type: postgres-changelog, url: "${this.db.url}", idleIntervalMs: 20 }`;
  }

  sink(): string {
    return `{ type: postgres, url: "${this.db.url}" }`;
  }

  async setUp(script: string): Promise<void> {
    await this.db.query(script);
  }

  apply(edits: Edit[], base: number): Promise<number> {
    return this.transaction(edits, base, false);
  }

  applyUntracked(edits: Edit[], base: number): Promise<number> {
    // A WAL holds every write: no row of a postgres-wal side exists without its change.
    if (this.wal) throw new Error(`side ${this.label} reads its WAL: it has no rows its capture did not see`);
    return this.transaction(edits, base, true);
  }

  /** The edits as one transaction; `untracked`: with cdc_sync.origin set, which the capture trigger skips (as cdc-sync's own writes). */
  private transaction(edits: Edit[], base: number, untracked: boolean): Promise<number> {
    return this.sessions.run(async (q) => {
      let touched = 0;
      await q('BEGIN', []);
      try {
        if (untracked) await q(`SELECT set_config('cdc_sync.origin', 'existing rows', true)`, []);
        for (const e of edits) touched += await this.edit(q, e, base);
        await q('COMMIT', []);
      } catch (error) {
        await q('ROLLBACK', []);
        throw error;
      }
      if (this.spaced) await stepApart();
      return touched;
    });
  }

  private async edit(q: Statement, e: Edit, base: number): Promise<number> {
    switch (e.kind) {
      case 'upsert-parent': {
        const v: ParentValues = e.values;
        return q(
          `INSERT INTO parent (id, name, qty, at, flag, data, doc) VALUES ($1, $2, $3, ${PG_AT}, $5, $6, $7)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, qty = EXCLUDED.qty, at = EXCLUDED.at, flag = EXCLUDED.flag, data = EXCLUDED.data, doc = EXCLUDED.doc`,
          [base + e.id, v.name, v.qty, v.at, v.flag, v.data === null ? null : Buffer.from(v.data), v.doc],
        );
      }
      case 'update-parent':
        return q(`UPDATE parent SET name = $2, qty = $3 WHERE id = $1`, [base + e.id, e.name, e.qty]);
      case 'delete-parent':
        return q(`DELETE FROM parent WHERE id = $1`, [base + e.id]);
      case 'move-parent':
        if (e.from === e.to) return 0;
        return q(`UPDATE parent SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM parent WHERE id = $2)`, [base + e.from, base + e.to]);
      case 'family': {
        await q(`SET CONSTRAINTS ALL DEFERRED`, []);
        const children = await q(
          `INSERT INTO child (id, parent_id, note) SELECT c, $2, 'born' FROM unnest($1::int[]) AS c
           ON CONFLICT (id) DO UPDATE SET parent_id = EXCLUDED.parent_id, note = EXCLUDED.note`,
          [e.children.map((c) => base + c), base + e.parent],
        );
        const parent = await q(`INSERT INTO parent (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`, [base + e.parent, e.name]);
        await q(`SET CONSTRAINTS ALL IMMEDIATE`, []);
        return children + parent;
      }
      case 'update-child':
        return q(`UPDATE child SET note = $2, parent_id = $3 WHERE id = $1 AND EXISTS (SELECT 1 FROM parent WHERE id = $3)`, [
          base + e.id,
          e.note,
          base + e.parent,
        ]);
      case 'delete-child':
        return q(`DELETE FROM child WHERE id = $1`, [base + e.id]);
      case 'move-child':
        if (e.from === e.to) return 0;
        return q(`UPDATE child SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM child WHERE id = $2)`, [base + e.from, base + e.to]);
    }
  }

  async snapshot(base: number): Promise<Snapshot> {
    const range = [base, base + SPAN];
    const parents = await this.db.query<Record<string, unknown>>(
      `SELECT id, name, qty::text AS qty, to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS at, flag, data, doc::text AS doc FROM parent WHERE id >= $1 AND id < $2`,
      range,
    );
    const children = await this.db.query<Record<string, unknown>>(`SELECT id, parent_id, note FROM child WHERE id >= $1 AND id < $2`, range);
    return snapshotOf(parents, children, base);
  }

  async userChanges(base: number): Promise<UserChange[]> {
    // A one-way target captures nothing: it has no change log.
    const [log] = await this.db.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.changes') IS NOT NULL AS ok`);
    if (!log!.ok) return [];
    const rows = await this.db.query<{ table_name: string; row_data: string | null; old_data: string | null; ms: string; id: string }>(
      `SELECT table_name, row_data, old_data, floor(extract(epoch FROM captured_at) * 1000)::bigint::text AS ms, id::text AS id
         FROM cdc_sync.changes WHERE origin IS DISTINCT FROM 'cdc-sync ping-back' ORDER BY id`,
    );
    return rows
      .map((r) => imageChange(r.table_name, r.row_data, r.old_data, Number(r.ms), Number(r.id), base, true))
      .filter((c) => inRange(c));
  }

  async writes(base: number): Promise<Write[]> {
    const rows = await this.db.query<{ tbl: string; id: number; detail: string }>(`SELECT tbl, id, detail FROM write_log WHERE id >= $1 AND id < $2 ORDER BY n`, [base, base + SPAN]);
    return rows.map((r) => ({ row: `${r.tbl} ${r.id - base}`, detail: r.detail }));
  }

  async deadLetters(): Promise<number> {
    // The sink makes the table when it opens, which may be after the process said it runs.
    const [table] = await this.db.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.dead_letters') IS NOT NULL AS ok`);
    if (!table!.ok) return 0;
    const [row] = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.dead_letters`);
    return Number(row!.n);
  }

  async deadLetterLines(): Promise<string[]> {
    const [table] = await this.db.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.dead_letters') IS NOT NULL AS ok`);
    if (!table!.ok) return [];
    const rows = await this.db.query<{ line: string }>(
      `SELECT format('%s %s %s (%s, %s): %s', stream, table_name, key, reason, CASE WHEN retried_at IS NULL THEN 'open' ELSE 'retried' END, left(error, 200)) AS line
         FROM cdc_sync.dead_letters ORDER BY id DESC LIMIT 10`,
    );
    return rows.map((r) => r.line);
  }

  async conflicts(): Promise<number> {
    const [log] = await this.db.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.conflicts') IS NOT NULL AS ok`);
    if (!log!.ok) return 0;
    const [row] = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.conflicts`);
    return Number(row!.n);
  }

  async close(): Promise<void> {
    await this.sessions.close();
    // A replication slot keeps its database from being dropped.
    if (this.wal) await this.db.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`).catch(() => []);
    await this.db.drop();
  }
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  // A server restart (a fault step) ends the connection; the pair reconnects after it.
  client.on('error', () => {});
  await client.connect();
  return client;
}
