import { describe, expect, it } from 'vitest';
import { classifyMssqlError, isMssqlConnectionError } from '../../../src/db/mssql/errors.js';
import { ConfigError, PermanentError, TransientError } from '../../../src/core/errors.js';

/** Errors shaped as the mssql driver raises them: RequestError with `number`, ConnectionError with `code`. */
const request = (number: number, message = `error ${number}`) => Object.assign(new Error(message), { name: 'RequestError', number });
const connection = (code: string) => Object.assign(new Error(`connection ${code}`), { name: 'ConnectionError', code });

describe('classifyMssqlError', () => {
  it.each([1205, -2, 1222, 4060, 18456, 40613, 40501, 10054])('treats error %i as transient', (n) => {
    const error = classifyMssqlError(request(n), { table: 'dbo.T' });
    expect(error).toBeInstanceOf(TransientError);
    expect(error.context).toMatchObject({ table: 'dbo.T', code: String(n) });
  });

  it.each(['ETIMEOUT', 'ESOCKET', 'ECONNCLOSED'])('treats connection error %s as transient and as a lost connection', (code) => {
    const error = classifyMssqlError(connection(code));
    expect(error.transient).toBe(true);
    expect(isMssqlConnectionError(error)).toBe(true);
  });

  it.each([
    [2627, 'constraint'],
    [2601, 'constraint'],
    [547, 'constraint'],
    [515, 'constraint'],
    [8152, 'invalid-data'],
    [2628, 'invalid-data'],
    [245, 'invalid-data'],
    [241, 'invalid-data'],
    [242, 'invalid-data'],
    [8672, 'other'],
    [313, 'other'],
    [208, 'schema'],
  ])('treats error %i as a permanent %s failure of the row', (n, reason) => {
    const error = classifyMssqlError(request(n));
    expect(error).toBeInstanceOf(PermanentError);
    expect(error.reason).toBe(reason);
    expect(isMssqlConnectionError(error)).toBe(false);
  });

  it.each([229, 50001])('treats error %i (permission denied, the identity guard) as a configuration error that stops the stream', (n) => {
    const error = classifyMssqlError(request(n), { table: 'dbo.T' });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.transient).toBe(false);
    expect(error.context).toMatchObject({ table: 'dbo.T', code: String(n) });
  });

  it('keeps an error that is already classified', () => {
    const original = new TransientError('x');
    expect(classifyMssqlError(original)).toBe(original);
  });
});
