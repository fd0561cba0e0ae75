import { randomBytes } from 'node:crypto';
import { Subject } from 'rxjs';
import { connectMssql, type MssqlClient } from '../../src/db/mssql/client.js';
import type { Source } from '../../src/cdc/source.js';
import type { ChangeEvent } from '../../src/core/change-event.js';

/**
 * The real-SQL-Server suite runs only where MSSQL_URL points at a SQL Server
 * 2022 with SQL Server Agent running (see .github/workflows/mssql.yml), e.g.
 * mssql://sa:Passw0rd!@localhost:1433/master?encrypt=false
 */
export const MSSQL_URL = process.env.MSSQL_URL;
export const SKIP_REASON = 'MSSQL_URL is not set: the real SQL Server suite needs a SQL Server 2022 with SQL Server Agent (see .github/workflows/mssql.yml)';

if (!MSSQL_URL) console.log(`test/mssql skipped: ${SKIP_REASON}`);

const raw = (sql: string) => ({ name: 'test.raw', sql });

export interface TestSqlServerDatabase {
  name: string;
  url: string;
  client: MssqlClient;
  exec(sql: string): Promise<Record<string, unknown>[]>;
  drop(): Promise<void>;
}

/** A fresh database with CDC enabled, and a client on it. */
export async function createSqlServerDatabase(): Promise<TestSqlServerDatabase> {
  const admin = await connectMssql(MSSQL_URL!, { applicationName: 'cdc-sync-tests' });
  const name = `cdc_sync_${randomBytes(4).toString('hex')}`;
  await admin.query(raw(`CREATE DATABASE [${name}]`));
  const u = new URL(MSSQL_URL!);
  u.pathname = `/${name}`;
  const url = u.toString();
  const client = await connectMssql(url, { applicationName: 'cdc-sync-tests' });
  await client.query(raw('EXEC sys.sp_cdc_enable_db'));
  return {
    name,
    url,
    client,
    exec: (sql) => client.query<Record<string, unknown>>(raw(sql)),
    async drop() {
      await client.close();
      await admin.query(raw(`ALTER DATABASE [${name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [${name}]`));
      await admin.close();
    },
  };
}

/**
 * Reads chunks from a source until `done(events)` holds: the capture job
 * publishes asynchronously (every few seconds), so tests wait for effects.
 */
export async function collect(source: Source, from: string | null, done: (events: ChangeEvent[]) => boolean, timeoutMs = 60_000): Promise<{ events: ChangeEvent[]; position: string | null }> {
  const demand = new Subject<void>();
  const events: ChangeEvent[] = [];
  let position: string | null = from;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      subscription.unsubscribe();
      reject(new Error(`timed out; got ${JSON.stringify(events.map((e) => [e.op, e.key]))}`));
    }, timeoutMs);
    const subscription = source.chunks(from, demand).subscribe({
      next(chunk) {
        events.push(...chunk.events);
        position = chunk.position;
        if (done(events)) {
          clearTimeout(timer);
          subscription.unsubscribe();
          resolve();
        } else setTimeout(() => demand.next(), 0);
      },
      error: reject,
    });
  });
  return { events, position };
}
