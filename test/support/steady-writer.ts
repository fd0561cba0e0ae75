import pg from 'pg';

/**
 * A writer that keeps changing `items (id bigint primary key, v int, note text)`
 * on its own connection while faults happen: inserts, updates (v + 1) and
 * deletes, one every `everyMs`. A statement that fails (the database
 * restarting) is simply tried again later; the writer never stops by itself.
 */
export class SteadyWriter {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  /** While true the writer writes nothing (an idle source). */
  paused = false;
  private next = 1;
  writes = 0;
  errors = 0;

  constructor(
    private readonly database: { run(sql: string): Promise<unknown>; close(): Promise<void> },
    private readonly everyMs = 15,
  ) {}

  /** A writer on a PostgreSQL database of its own connection. */
  static postgres(url: string, everyMs?: number): SteadyWriter {
    const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 2000 });
    // A restart of the server ends idle connections; the next write reconnects.
    pool.on('error', () => {});
    return new SteadyWriter({ run: (sql) => pool.query(sql), close: () => pool.end() }, everyMs);
  }

  start(): void {
    this.timer = setInterval(() => void this.step(), this.everyMs);
  }

  private async step(): Promise<void> {
    if (this.busy || this.paused) return;
    this.busy = true;
    const n = this.next;
    try {
      // Whole numbers of the writer's own making: no parameters needed, the same SQL for PostgreSQL and SQLite.
      if (n % 7 === 0) await this.database.run(`DELETE FROM items WHERE id = ${n - 5}`);
      else if (n % 3 === 0) await this.database.run(`UPDATE items SET v = v + 1, note = note || '+' WHERE id = ${n - 2}`);
      else await this.database.run(`INSERT INTO items (id, v, note) VALUES (${n}, 0, 'row ${n}')`);
      this.next += 1;
      this.writes += 1;
    } catch {
      this.errors += 1;
    } finally {
      this.busy = false;
    }
  }

  /** Resolves once no write is in progress (after `paused = true`). */
  async settled(): Promise<void> {
    while (this.busy) await new Promise((r) => setTimeout(r, 5));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 5));
    await this.database.close();
  }
}

/** The rows of `items` as text, in key order, for comparing two databases. */
export async function itemRows(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT id::text, v, note FROM items ORDER BY id`);
    return JSON.stringify(rows);
  } finally {
    await client.end();
  }
}
