import { afterEach, describe, expect, it } from 'vitest';
import type { MssqlClient } from '../../../src/db/mssql/client.js';
import { SAVE_CHECKPOINT } from '../../../src/sinks/mssql/queries.js';
import { connect } from './driver.js';
import { FakeSqlServer } from './fake-server.js';
import { FakeTarget } from './fake-target.js';

/**
 * The stand-in's HTTP bridge keeps SQL Server's transaction guarantees for
 * a CLI process: all of a transaction or nothing, also when the process is
 * killed in the middle (SQL Server rolls back the open transaction of a
 * connection that dropped: https://learn.microsoft.com/sql/t-sql/language-elements/transactions-transact-sql),
 * and other writers wait for it (its locks).
 */
let server: FakeSqlServer;

afterEach(async () => {
  await server.close();
});

async function open(): Promise<{ target: FakeTarget; client: MssqlClient }> {
  server = new FakeSqlServer();
  server.transactionIdleMs = 200;
  const target = new FakeTarget(server);
  const client = await connect(await server.listen(), { applicationName: 'test' });
  return { target, client };
}

const save = (position: string) => ({ stream: { type: 'nvarchar' as const, value: 's' }, position: { type: 'nvarchar-max' as const, value: position } });

describe('the fake SQL Server bridge', () => {
  it('commits a transaction whole, and rolls back one whose work failed', async () => {
    const { target, client } = await open();
    await client.transaction(async (tx) => tx.query(SAVE_CHECKPOINT, save('1')));
    expect(target.checkpoints.get('s')).toBe('1');
    const failed = await client
      .transaction(async (tx) => {
        await tx.query(SAVE_CHECKPOINT, save('2'));
        throw new Error('the sink gave up');
      })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(target.checkpoints.get('s')).toBe('1');
  });

  it('rolls back the transaction of a client that stopped sending (killed), and refuses its next statement', async () => {
    const { target, client } = await open();
    let resume!: () => void;
    const abandoned = client
      .transaction(async (tx) => {
        await tx.query(SAVE_CHECKPOINT, save('half'));
        await new Promise<void>((r) => (resume = r));
        await tx.query(SAVE_CHECKPOINT, save('late'));
      })
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 400));
    expect(target.checkpoints.has('s')).toBe(false);
    resume();
    expect(String(await abandoned)).toMatch(/reset/);
    expect(target.checkpoints.has('s')).toBe(false);
  });

  it("makes an application's transaction wait until the open one ends", async () => {
    const { target, client } = await open();
    const order: string[] = [];
    let finish!: () => void;
    const open1 = client.transaction(async (tx) => {
      await tx.query(SAVE_CHECKPOINT, save('sink'));
      order.push('sink wrote');
      await new Promise<void>((r) => (finish = r));
    });
    await new Promise((r) => setTimeout(r, 50));
    const app = server.exclusive(() => order.push(`application saw ${target.checkpoints.get('s')}`));
    await new Promise((r) => setTimeout(r, 50));
    expect(order).toEqual(['sink wrote']);
    finish();
    await open1;
    await app;
    expect(order).toEqual(['sink wrote', 'application saw sink']);
  });
});
