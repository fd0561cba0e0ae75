import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { Pool, PoolClient, QueryResult } from './pool.js';
import { importModule } from '../../core/import-module.js';

export function isPgliteUrl(url: string): boolean {
  return url.startsWith('pglite:');
}

interface Shared {
  db: Promise<PGlite>;
  /** One connection: statements of different "clients" must not interleave inside a transaction. */
  lock: Promise<void>;
  users: number;
}

const open = new Map<string, Shared>();

/**
 * PGlite (PostgreSQL in WebAssembly, in this process) behind the Pool
 * interface, for the embedded default: no server to install, the same SQL
 * as PostgreSQL. It has one connection, so a client holds a lock from
 * `connect()` to `release()`, and every stream of the process that names
 * the same data directory shares one instance.
 */
export function openPglite(url: string): Pool {
  const target = url.slice('pglite:'.length).replace(/^\/\//, '');
  const dataDir = target === '' || target === 'memory' ? undefined : resolve(target);
  const id = dataDir ?? `memory:${open.size}`;
  let shared = open.get(id);
  if (!shared) {
    if (dataDir) mkdirSync(dataDir, { recursive: true });
    const db = importModule<typeof import('@electric-sql/pglite')>('@electric-sql/pglite').then(async ({ PGlite: Db }) => {
      const instance = await Db.create(dataDir ? { dataDir } : {});
      await instance.exec(`SET TimeZone = 'UTC'`);
      return instance;
    });
    shared = { db, lock: Promise.resolve(), users: 0 };
    open.set(id, shared);
  }
  shared.users += 1;
  const s = shared;
  const run = async <R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> => {
    const db = await s.db;
    if (!params || params.length === 0) {
      // Scripts (set-up SQL) hold several statements: the simple protocol, like pg without parameters.
      const results = await db.exec(sql);
      const last = results.at(-1);
      return { rows: (last?.rows ?? []) as R[], rowCount: last?.affectedRows ?? last?.rows.length ?? 0 };
    }
    const result = await db.query<R>(sql, params);
    return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
  };
  const acquire = async (): Promise<() => void> => {
    let release!: () => void;
    const previous = s.lock;
    s.lock = new Promise<void>((r) => (release = r));
    await previous;
    return release;
  };
  let ended = false;
  return {
    async query<R>(sql: string, params?: unknown[]) {
      const release = await acquire();
      try {
        return await run<R>(sql, params);
      } finally {
        release();
      }
    },
    async connect(): Promise<PoolClient> {
      const release = await acquire();
      const script = async (sql: string) => (await (await s.db).exec(sql)).map((r) => r.affectedRows ?? r.rows.length);
      return { query: run, script, release: () => release() };
    },
    async end() {
      if (ended) return;
      ended = true;
      s.users -= 1;
      if (s.users === 0) {
        open.delete(id);
        await (await s.db).close();
      }
    },
  };
}
