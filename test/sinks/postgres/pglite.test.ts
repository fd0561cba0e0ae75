import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Subject, firstValueFrom, take } from 'rxjs';
import { afterAll, describe, expect, it } from 'vitest';
import { changelogSetupSql } from '../../../src/cdc/postgres/changelog-setup.js';
import { ChangeLogSource } from '../../../src/cdc/postgres/changelog-source.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { createPool } from '../../../src/db/postgres/connection.js';
import { PostgresSink } from '../../../src/sinks/postgres/postgres-sink.js';
import { testContext } from '../../support/stream-context.js';

/**
 * The embedded default runs the PostgreSQL adapters on PGlite: the same
 * change-log capture and set-based sink, through the same Pool interface.
 */
const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-pglite-'));
const url = `pglite:${dir}`;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('PostgreSQL adapters on PGlite', () => {
  it('captures changes with the change-log triggers and reads them in order, skipping its own writes', async () => {
    const pool = createPool(url);
    await pool.query(`CREATE TABLE notes (id bigint PRIMARY KEY, note text, amount numeric(30,10))`);
    await pool.query(changelogSetupSql(['public.notes']));
    await pool.query(`INSERT INTO notes VALUES (1, 'a', 12345678901234567890.0123456789), (2, 'b', 1)`);
    await pool.query(`UPDATE notes SET note = 'c' WHERE id = 2`);

    const table: TableConfig = { source: 'public.notes', target: 'public.notes' };
    const sink = new PostgresSink(url);
    const context = testContext('echo');
    const targets = await sink.open(context, [table]);
    sink.bind([new TableMapping(table, targets[0]!, 'tables[0]', () => {})]);
    // A cdc-sync write into the same database: not captured again.
    await sink.apply({ changes: [{ table: 'public.notes', op: 'insert', key: { id: 3 }, row: { id: 3, note: 'echo', amount: '2' }, position: 'x', commitTime: new Date() }], deadLetters: [] });

    const source = new ChangeLogSource({ url, tables: [table], readLimit: 100, pollIntervalMs: 1, idleIntervalMs: 5, retry: { attempts: 1, minDelayMs: 1, maxDelayMs: 2 } });
    const readContext = testContext();
    await source.open(readContext);
    const chunk = await firstValueFrom(source.chunks(null, new Subject<void>()).pipe(take(1)));
    // The log's changes, then (a first start: snapshot initial) the copy of the rows as they are after them.
    expect(chunk.events.map((e) => [e.op, e.key.id, e.row?.note, e.copied ?? false])).toEqual([
      ['insert', 1, 'a', false],
      ['insert', 2, 'b', false],
      ['update', 2, 'c', false],
      ['insert', 1, 'a', true],
      ['insert', 2, 'c', true],
      ['insert', 3, 'echo', true],
    ]);
    expect(chunk.events[0]!.row!.amount).toBe('12345678901234567890.0123456789');
    expect((await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM notes`)).rows).toEqual([{ n: 3 }]);
    readContext.controller.abort();
    await Promise.all([source.close(), sink.close(), pool.end()]);
  });
});
