import { describe, expect, it } from 'vitest';
import { FakeSqlServer } from './fake-server.js';

describe('the SQL Server stand-in', () => {
  it('refuses a statement that does not parse as T-SQL, as SQL Server does (Msg 102), before any handler runs', async () => {
    const server = new FakeSqlServer();
    let answered = 0;
    server.handlers.set('test.one', () => {
      answered += 1;
      return [{ one: 1 }];
    });
    const client = server.client();
    await expect(client.query({ name: 'test.one', sql: 'SELECT 1 AS [one];' })).resolves.toEqual([{ one: 1 }]);
    await expect(client.query({ name: 'test.one', sql: 'SELECT 1 AS [one] FROM;' })).rejects.toThrow(/Incorrect syntax in test\.one/);
    expect(answered).toBe(1);
  });
});
