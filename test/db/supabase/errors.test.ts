import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { classifyPostgrestError } from '../../../src/db/supabase/errors.js';

describe('classifyPostgrestError', () => {
  it('stops the stream on "permission denied" (42501) with the GRANT to run, instead of dead-lettering every change', () => {
    const error = classifyPostgrestError({ status: 401, code: '42501', message: 'permission denied for table visits' }, { stream: 's', table: 't' });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/permission denied for table visits; the service_role needs GRANT SELECT, INSERT, UPDATE, DELETE/);
    expect(error.context).toMatchObject({ stream: 's', table: 't', code: '42501' });
  });

  it.each([
    // No HTTP answer at all: what supabase-js returns for a failed fetch.
    [{ status: 0, code: '', message: 'TypeError: fetch failed', details: 'TypeError: fetch failed\n\nCaused by: Error: connect ECONNREFUSED 10.0.0.1:443 (ECONNREFUSED)' }, 'ECONNREFUSED'],
    [{ status: 0, code: '', message: 'AbortError: This operation was aborted', hint: 'Request was aborted (timeout or manual cancellation)' }, undefined],
    [{ status: 503, code: 'PGRST000', message: 'Database connection error. Retrying the connection.' }, 'PGRST000'],
    [{ status: 503, code: 'PGRST001', message: 'Database client error. Retrying the connection.' }, 'PGRST001'],
    [{ status: 503, code: 'PGRST002', message: 'Could not query the database for the schema cache. Retrying.' }, 'PGRST002'],
    [{ status: 504, code: 'PGRST003', message: 'Timed out acquiring connection from connection pool.' }, 'PGRST003'],
    [{ status: 503, code: '08006', message: 'connection failure' }, '08006'],
    [{ status: 500, code: '40001', message: 'could not serialize access' }, '40001'],
    [{ status: 500, code: '40P01', message: 'deadlock detected' }, '40P01'],
    [{ status: 503, code: '53300', message: 'too many connections' }, '53300'],
    [{ status: 503, code: '57P01', message: 'terminating connection due to administrator command' }, '57P01'],
    [{ status: 500, code: '57014', message: 'canceling statement due to statement timeout' }, '57014'],
    [{ status: 503, message: 'upstream connect error or disconnect/reset before headers' }, 'HTTP 503'],
    [{ status: 502, message: 'Bad Gateway' }, 'HTTP 502'],
    [{ status: 504, message: 'The upstream server is timing out' }, 'HTTP 504'],
    [{ status: 429, message: 'API rate limit exceeded' }, 'HTTP 429'],
    [{ status: 401, code: 'PGRST301', message: 'JWT expired' }, 'PGRST301'],
    [{ status: 401, message: 'Invalid API key' }, 'HTTP 401'],
  ])('retries %o (transient)', (failure, code) => {
    const error = classifyPostgrestError(failure, { stream: 's', table: 't' });
    expect(error.transient).toBe(true);
    expect(error.context.code).toBe(code);
    expect(error.context).toMatchObject({ stream: 's', table: 't' });
  });

  it.each([
    [{ status: 409, code: '23505', message: 'duplicate key value violates unique constraint "items_pkey"', details: 'Key (id)=(1) already exists.' }, 'constraint'],
    [{ status: 409, code: '23503', message: 'insert or update on table "items" violates foreign key constraint' }, 'missing-parent'],
    [{ status: 400, code: '23502', message: 'null value in column "name" violates not-null constraint' }, 'constraint'],
    [{ status: 400, code: '23514', message: 'new row violates check constraint "items_name_check"' }, 'constraint'],
    [{ status: 400, code: '22P02', message: 'invalid input syntax for type uuid: "x"' }, 'invalid-data'],
    [{ status: 400, code: '22003', message: 'numeric field overflow' }, 'invalid-data'],
    [{ status: 400, code: 'PGRST204', message: "Could not find the 'colour' column of 'items' in the schema cache" }, 'schema'],
    [{ status: 404, code: 'PGRST205', message: "Could not find the table 'public.nope' in the schema cache" }, 'schema'],
    [{ status: 404, code: '42P01', message: 'relation "public.nope" does not exist' }, 'schema'],
    [{ status: 400, code: '42703', message: 'column items.colour does not exist' }, 'schema'],
    [{ status: 400, code: '42P10', message: 'there is no unique or exclusion constraint matching the ON CONFLICT specification' }, 'schema'],
    [{ status: 403, code: '42501', message: 'new row violates row-level security policy for table "items"' }, 'schema'],
    [{ status: 400, code: 'PGRST102', message: 'Empty or invalid json' }, 'invalid-data'],
    [{ status: 400, code: 'P0001', message: 'raised by a trigger' }, 'other'],
    [{ status: 413, message: 'Payload Too Large' }, 'other'],
  ])('dead-letters %o (permanent, reason %s)', (failure, reason) => {
    const error = classifyPostgrestError(failure);
    expect(error.transient).toBe(false);
    expect(error.reason).toBe(reason);
  });

  it('puts message, details and hint into one line for the dead letter', () => {
    const error = classifyPostgrestError({ status: 409, code: '23505', message: 'duplicate key value', details: 'Key (id)=(1) already exists.', hint: 'none' });
    expect(error.message).toBe('duplicate key value — Key (id)=(1) already exists. — hint: none');
    const network = classifyPostgrestError({ status: 0, message: 'TypeError: fetch failed', details: 'TypeError: fetch failed\n\nCaused by: Error: getaddrinfo ENOTFOUND x.supabase.co (ENOTFOUND)\n    at stack' });
    expect(network.message).toBe('TypeError: fetch failed — Caused by: Error: getaddrinfo ENOTFOUND x.supabase.co (ENOTFOUND)');
    expect(network.context.code).toBe('ENOTFOUND');
  });
});
