import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { changelogSetupSql } from '../../../src/cdc/postgres/changelog-setup.js';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { PostgresSink } from '../../../src/sinks/postgres/postgres-sink.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';

/**
 * newer-wins by change time in a two-way set-up (the target's change log is
 * captured), against edits the application makes while a batch is applied.
 * A local transaction the batch has to wait for must be judged after it
 * commits, whether the row existed before or not.
 */
const TABLES: TableConfig[] = [{ source: 'public.notes', target: 'public.notes' }];

let db: TestDatabase;
let sink: PostgresSink;
let app: pg.Client;

function change(op: ChangeEvent['op'], id: number, body: string | null, commitTime: Date): ChangeEvent {
  return { table: 'public.notes', op, key: { id }, row: body === null ? null : { id, body }, position: '1', commitTime };
}

const stored = async (id: number) => (await db.query<{ body: string }>(`SELECT body FROM notes WHERE id = $1`, [id]))[0]?.body ?? null;
const pingBacks = () => db.query<{ op: string; row_data: string | null; old_data: string | null; captured_at: Date }>(
  `SELECT op, row_data, old_data, captured_at FROM cdc_sync.changes WHERE origin = 'cdc-sync ping-back' ORDER BY id`,
);

/** Runs `apply` while `app` holds an open transaction, committing it once the batch is waiting for it (or done). */
async function applyDuring(batch: ChangeEvent[]): Promise<Awaited<ReturnType<PostgresSink['apply']>>> {
  const applying = sink.apply({ changes: batch, deadLetters: [], checkpoint: { stream: 's1', position: 'p' } });
  // Long enough for the batch to reach its write and block on the application's row.
  await new Promise((r) => setTimeout(r, 300));
  await app.query('COMMIT');
  return applying;
}

beforeAll(async () => {
  db = await createTestDatabase('change_time');
  await db.query(`CREATE TABLE notes (id int PRIMARY KEY, body text)`);
  await db.query(changelogSetupSql(['public.notes']));
  sink = new PostgresSink(db.url);
  const targets = await sink.open(testContext('s1'), TABLES);
  sink.bind(TABLES.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {})));
  app = new pg.Client({ connectionString: db.url });
  await app.connect();
});

afterAll(async () => {
  await app.end();
  await sink.close();
  await db.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE notes, cdc_sync.changes, cdc_sync.conflicts');
});

describe('PostgresSink, newer-wins by change time', () => {
  for (const op of ['insert', 'update'] as const) {
    it(`keeps a new row the application inserted, uncommitted, while an older incoming ${op} of the key waited for it`, async () => {
      const older = new Date(Date.now() - 60_000);
      await app.query('BEGIN');
      await app.query(`INSERT INTO notes VALUES (1, 'typed by the user')`);
      const result = await applyDuring([change(op, 1, 'older, from the other side', older)]);
      expect(await stored(1)).toBe('typed by the user');
      expect(result.conflicts).toEqual([{ table: 'public.notes', key: { id: 1 } }]);
      const [logged] = await db.query<{ winner: string }>(`SELECT winner FROM cdc_sync.conflicts`);
      expect(logged?.winner).toBe('stored');
    });
  }

  it('keeps a row the application deleted, uncommitted, while an incoming update older than the delete waited for it', async () => {
    await db.query(`INSERT INTO notes VALUES (2, 'before')`);
    await new Promise((r) => setTimeout(r, 20));
    const between = new Date();
    await new Promise((r) => setTimeout(r, 20));
    await app.query('BEGIN');
    await app.query(`DELETE FROM notes WHERE id = 2`);
    await applyDuring([change('update', 2, 'older than the delete', between)]);
    expect(await stored(2)).toBeNull();
  });

  it('applies an incoming change newer than the local edit it waited for', async () => {
    await app.query('BEGIN');
    await app.query(`INSERT INTO notes VALUES (3, 'typed by the user')`);
    const result = await applyDuring([change('insert', 3, 'newer, from the other side', new Date(Date.now() + 60_000))]);
    expect(await stored(3)).toBe('newer, from the other side');
    expect(result.conflicts).toEqual([]);
  });

  it('sends a lost change\'s winning delete back to the other side, stamped with the delete\'s own time', async () => {
    await db.query(`INSERT INTO notes VALUES (4, 'before')`);
    await db.query(`DELETE FROM notes WHERE id = 4`);
    const [deleted] = await db.query<{ captured_at: Date }>(`SELECT captured_at FROM cdc_sync.changes WHERE op = 'D'`);
    const result = await sink.apply({
      changes: [change('update', 4, 'older, from the other side', new Date(Date.now() - 60_000))],
      deadLetters: [],
      checkpoint: { stream: 's1', position: 'p' },
    });
    expect(result.conflicts).toHaveLength(1);
    expect(await stored(4)).toBeNull();
    const sent = await pingBacks();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.op).toBe('D');
    expect(JSON.parse(sent[0]!.old_data!)).toEqual({ id: 4 });
    expect(sent[0]!.captured_at.getTime()).toBe(deleted!.captured_at.getTime());
  });
});
