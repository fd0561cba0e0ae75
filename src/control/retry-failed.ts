import { appendFile, readFile } from 'node:fs/promises';
import type { ChangeEvent, Op, Row } from '../core/change-event.js';
import { errorMessage } from '../core/errors.js';
import { parseJson } from '../core/json.js';
import type { Config } from '../config/schema.js';
import { FileDeadLetterStore } from '../dead-letters/file-dead-letter-store.js';
import { loadMssqlDriver, type MssqlClient, type MssqlConnect } from '../db/mssql/client.js';
import { MARK_DEAD_LETTERS_RETRIED, OPEN_DEAD_LETTERS } from '../sinks/mssql/queries.js';
import { createPool } from '../db/postgres/connection.js';
import type { Stream } from '../streams/stream.js';
import { SqliteDeadLetters } from '../sinks/sqlite/dead-letters.js';
import type { DeadLetterRetryStore, OpenDeadLetter } from '../dead-letters/retry-store.js';

export type { DeadLetterRetryStore, OpenDeadLetter } from '../dead-letters/retry-store.js';

/** The sink keeps them in `cdc_sync.dead_letters` of its PostgreSQL database; retried ones get `retried_at`. */
export class PostgresDeadLetters implements DeadLetterRetryStore {
  private readonly pool;
  constructor(url: string) {
    this.pool = createPool(url, { max: 1 });
  }
  async open(stream: string, table?: string): Promise<OpenDeadLetter[]> {
    const result = await this.pool.query<OpenDeadLetter>(
      `SELECT id::text AS id, table_name AS "table", payload, position FROM cdc_sync.dead_letters
        WHERE stream = $1 AND retried_at IS NULL AND ($2::text IS NULL OR table_name = $2) ORDER BY id`,
      [stream, table ?? null],
    );
    return result.rows;
  }
  async markRetried(ids: string[]): Promise<void> {
    if (ids.length > 0) await this.pool.query(`UPDATE cdc_sync.dead_letters SET retried_at = now() WHERE id = ANY($1::bigint[])`, [ids]);
  }
  close(): Promise<void> {
    return this.pool.end();
  }
}

/**
 * The JSON-lines file of sinks without transactions (supabase). The file
 * stays append-only: retried letters are recorded in a sibling file
 * (`<path>.retried`, one line number per line), so a crash while marking
 * cannot tear a dead letter. A letter's id is its index among the readable
 * lines, which never changes because lines are only ever appended.
 */
export class FileDeadLetters implements DeadLetterRetryStore {
  private readonly store: FileDeadLetterStore;
  constructor(readonly path: string) {
    this.store = new FileDeadLetterStore(path);
  }
  async open(stream: string, table?: string): Promise<OpenDeadLetter[]> {
    const done = await this.retried();
    return (await this.store.read())
      .map((letter, i) => ({ id: String(i), table: letter.table, payload: letter.payload, position: letter.position, stream: letter.stream }))
      .filter((l) => l.stream === stream && (!table || l.table === table) && !done.has(l.id))
      .map(({ stream: _stream, ...letter }) => letter);
  }
  async markRetried(ids: string[]): Promise<void> {
    if (ids.length > 0) await appendFile(`${this.path}.retried`, ids.map((id) => `${id}\n`).join(''));
  }
  async close(): Promise<void> {}
  private async retried(): Promise<Set<string>> {
    try {
      return new Set((await readFile(`${this.path}.retried`, 'utf8')).split('\n').filter(Boolean));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw error;
    }
  }
}

/** The SQL Server sink keeps them in its `cdc_sync.dead_letters`; retried ones get `retried_at`. */
export class MssqlDeadLetters implements DeadLetterRetryStore {
  private client: Promise<MssqlClient> | undefined;
  constructor(
    private readonly url: string,
    private readonly driver?: MssqlConnect,
  ) {}
  private connect(): Promise<MssqlClient> {
    this.client ??= (this.driver ? Promise.resolve(this.driver) : loadMssqlDriver()).then((connect) => connect(this.url, { applicationName: 'cdc-sync' }));
    return this.client;
  }
  async open(stream: string, table?: string): Promise<OpenDeadLetter[]> {
    return (await this.connect()).query<OpenDeadLetter>(OPEN_DEAD_LETTERS, {
      stream: { type: 'nvarchar', value: stream },
      table: { type: 'nvarchar', value: table ?? null },
    });
  }
  async markRetried(ids: string[]): Promise<void> {
    if (ids.length > 0) await (await this.connect()).query(MARK_DEAD_LETTERS_RETRIED, { ids: { type: 'nvarchar-max', value: JSON.stringify(ids) } });
  }
  async close(): Promise<void> {
    if (this.client) await (await this.client).close();
  }
}

/** The operation is not available for this configuration (HTTP 501). */
export class NotImplementedError extends Error {
  override name = 'NotImplementedError';
}

/** The store of a stream's dead letters, chosen by its sink type. */
export function deadLetterStoreFor(config: Config, streamName: string): DeadLetterRetryStore {
  const stream = config.streams.find((s) => s.name === streamName)!;
  switch (stream.sink.type) {
    case 'postgres':
      return new PostgresDeadLetters(stream.sink.url);
    case 'supabase':
    case 'nats':
      return new FileDeadLetters(config.deadLetters.path);
    case 'mssql':
      return new MssqlDeadLetters(stream.sink.url);
    case 'sqlite':
      return new SqliteDeadLetters(stream.sink.url);
    default:
      throw new NotImplementedError(`retry-failed: dead letters of a "${stream.sink.type}" sink (stream ${streamName}) cannot be retried by this version yet; re-apply them from cdc_sync.dead_letters by hand`);
  }
}

export interface RetryResult {
  retried: number;
  stillFailing: number;
  /** Letters whose payload is not a change (raw rejected input): left as they are. */
  skipped: number;
}

const OPS = new Set<Op>(['insert', 'update', 'delete', 'truncate']);

/** A dead letter's payload as a change in target column names, or null when it is raw rejected input. */
function changeOf(letter: OpenDeadLetter): ChangeEvent | null {
  let value: unknown;
  try {
    value = parseJson(letter.payload);
  } catch {
    return null;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return null;
  const p = value as { op?: unknown; key?: unknown; row?: unknown; before?: unknown; commitTime?: unknown };
  if (!OPS.has(p.op as Op) || !p.key || typeof p.key !== 'object') return null;
  if (p.op !== 'delete' && p.op !== 'truncate' && (!p.row || typeof p.row !== 'object')) return null;
  return {
    table: letter.table,
    op: p.op as Op,
    key: p.key as Row,
    row: p.op === 'delete' || p.op === 'truncate' ? null : (p.row as Row),
    before: (p.before as Row | null | undefined) ?? null,
    position: letter.position,
    // The change's own time: under newer-wins by change time a newer edit made on the target since keeps its row.
    commitTime: typeof p.commitTime === 'string' && !Number.isNaN(Date.parse(p.commitTime)) ? new Date(p.commitTime) : new Date(),
  };
}

/**
 * Re-applies a stream's open dead letters through its sink, one at a time in
 * the order they failed (a later change of a key wins), without touching the
 * checkpoint; the ones that apply are marked retried, the others stay open.
 */
export async function retryFailed(stream: Stream, store: DeadLetterRetryStore, table?: string): Promise<RetryResult> {
  const letters = await store.open(stream.name, table);
  const result: RetryResult = { retried: 0, stillFailing: 0, skipped: 0 };
  const changes = letters.map((letter) => ({ letter, change: changeOf(letter) }));
  result.skipped = changes.filter((c) => !c.change).length;
  if (changes.every((c) => !c.change)) return result;
  await stream.withSink(async (sink) => {
    for (const { letter, change } of changes) {
      if (!change) continue;
      try {
        await sink.apply({ changes: [change], deadLetters: [] });
        await store.markRetried([letter.id]);
        result.retried += 1;
      } catch (error) {
        result.stillFailing += 1;
        stream.log.warn({ table: letter.table, id: letter.id, err: errorMessage(error) }, 'dead letter still fails');
      }
    }
  });
  return result;
}
