// A PostgREST stand-in for tests: Supabase's REST API (`/rest/v1/<table>`) over
// node:http, executing against a real PostgreSQL database. It serves what
// supabase-js sends for tables — select with filters/or/order/limit/offset/Range,
// insert and upsert (on_conflict, columns, Prefer resolution/return/count),
// update, delete — plus the OpenAPI root, answers errors the way PostgREST does
// (errors.ts), and checks `apikey`/`Authorization` the way Supabase's gateway
// does. Like PostgREST, each request runs in one transaction that first sets
// `request.headers`, `request.method` and `request.path` (PostgREST/postgrest:
// src/PostgREST/Query/PreQuery.hs, txVarQuery). As on Supabase, it connects as
// the NOINHERIT `authenticator` and switches to the role of the request's
// token (anon, authenticated, service_role) in each transaction, in a
// database that grants tables to no API role by default
// (test/support/supabase-roles.ts). Tests can inject failures and delays and
// read every request it got.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { ANON_KEY, SERVICE_ROLE_KEY, isProjectKey, roleOfToken, type ApiRole } from '../supabase-keys.js';
import { createSupabaseRoles } from '../supabase-roles.js';
import { INJECTED, PostgrestError, fromPgError, invalidBody, schemaNotExposed, tableNotFound } from './errors.js';
import { parseQueryParams } from './query-string.js';
import { loadSchemaCache, openApiDocument, type CachedTable } from './schema-cache.js';
import { countStatement, deleteStatement, insertStatement, parsePrefer, readStatement, requireColumns, requireFilters, updateStatement, type Statement } from './sql.js';

export interface RecordedRequest {
  method: string;
  /** The table of `/rest/v1/<table>`, '' for the root. */
  table: string;
  path: string;
  /** The raw query string, `?…` included. */
  search: string;
  headers: Record<string, string>;
  bodyBytes: number;
  /** Rows in a JSON array body. */
  rows: number;
  status: number;
}

export interface InjectedResponse {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

export interface PostgrestStandIn {
  /** The "Supabase project URL": supabase-js adds /rest/v1. */
  url: string;
  /** The service-role (secret) key. */
  key: string;
  /** The anon (publishable) key. */
  anonKey: string;
  requests: RecordedRequest[];
  count(match?: { method?: string; table?: string }): number;
  /** The next `times` matching requests get this answer instead of reaching the database. */
  fail(times: number, response: keyof typeof INJECTED | InjectedResponse, match?: { method?: string; table?: string }): void;
  /** Hold the next `times` requests for `ms` before answering. */
  delay(ms: number, times?: number): void;
  /** Forget requests, injected failures and delays. */
  reset(): void;
  /** Re-read tables and columns (PostgREST: NOTIFY pgrst, 'reload schema'). */
  reloadSchema(): Promise<void>;
  close(): Promise<void>;
}

export interface StandInOptions {
  databaseUrl: string;
  /** The service-role key. */
  key?: string;
  /** Exposed schemas (PostgREST db-schemas); the first is the default. */
  schemas?: string[];
  /**
   * true (the default): connect as `authenticator` and run each request as
   * the role its token stands for, "SET LOCAL ROLE" in the request's
   * transaction (https://postgrest.org/en/stable/references/auth.html, "Roles";
   * PostgREST src/PostgREST/Query.hs, setPgLocals). false: run as the
   * database URL's (owning) user, for tests about something else that make
   * their own tables without grants.
   */
  roles?: boolean;
  /** db-max-rows: Supabase's default 1,000; null for none. */
  maxRows?: number | null;
}

interface Reply {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

export async function startPostgrest(options: StandInOptions): Promise<PostgrestStandIn> {
  const key = options.key ?? SERVICE_ROLE_KEY;
  const maxRows = options.maxRows === undefined ? 1000 : options.maxRows;
  const schemas = options.schemas ?? ['public'];
  const roles = options.roles ?? true;
  const pool = new pg.Pool({ connectionString: roles ? await asAuthenticator(options.databaseUrl) : options.databaseUrl, max: 4, options: '-c TimeZone=UTC' });
  let cache = await loadSchemaCache(pool, schemas);
  const requests: RecordedRequest[] = [];
  let injections: { response: InjectedResponse; match: { method?: string; table?: string } | undefined }[] = [];
  let delays: { ms: number; times: number }[] = [];

  const matches = (r: { method: string; table: string }, m?: { method?: string; table?: string }) =>
    !m || ((!m.method || m.method === r.method) && (m.table === undefined || m.table === r.table));

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': JSON_TYPE });
      res.end(JSON.stringify({ code: 'PGRSTX00', message: String(error), details: null, hint: null }));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const method = req.method ?? 'GET';
    const rest = url.pathname.startsWith('/rest/v1') ? url.pathname.slice('/rest/v1'.length).replace(/^\//, '') : null;
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, [v ?? ''].flat().join(', ')]));
    const record: RecordedRequest = {
      method,
      table: rest === null ? '' : decodeURIComponent(rest),
      path: url.pathname,
      search: url.search,
      headers,
      bodyBytes: body.length,
      rows: countRows(body),
      status: 0,
    };
    requests.push(record);
    const delay = delays[0];
    if (delay) {
      if (--delay.times <= 0) delays.shift();
      await new Promise((r) => setTimeout(r, delay.ms));
    }
    const reply = await answer(record, url, body, headers).catch((error: unknown) => {
      const e = error instanceof PostgrestError ? error : fromPgError(error, { anonymous: roleOf(headers, url) === 'anon' });
      return { status: e.status, body: JSON.stringify(e.body()), headers: { 'Content-Type': JSON_TYPE, 'Proxy-Status': `PostgREST; error=${e.code}` } };
    });
    record.status = reply.status;
    res.writeHead(reply.status, reply.headers ?? {});
    res.end(method === 'HEAD' ? undefined : reply.body);
  }

  async function answer(record: RecordedRequest, url: URL, body: Buffer, headers: Record<string, string>): Promise<Reply> {
    const index = injections.findIndex((i) => matches(record, i.match));
    if (index >= 0) {
      const { response } = injections.splice(index, 1)[0]!;
      const type = response.body.startsWith('{') ? JSON_TYPE : 'text/plain';
      return { status: response.status, body: response.body, headers: { 'Content-Type': type, ...response.headers } };
    }
    // Supabase's API gateway: the project key in `apikey` (header or query), then PostgREST checks the JWT.
    const apikey = headers.apikey ?? url.searchParams.get('apikey');
    if (!apikey) return gateway(401, 'No API key found in request', 'No `apikey` request header or url param was found.');
    if (!isProjectKey(apikey, key)) return gateway(401, 'Invalid API key', 'Double check your Supabase `anon` or `service_role` API key.');
    const role = roleOf(headers, url);
    if (!role) throw new PostgrestError(401, 'PGRST301', 'No suitable key or wrong key type');
    if (url.pathname !== '/rest/v1' && !url.pathname.startsWith('/rest/v1/')) return gateway(404, 'no Route matched with those values');
    const reading = record.method === 'GET' || record.method === 'HEAD';
    const schema = (reading ? headers['accept-profile'] : headers['content-profile']) ?? schemas[0]!;
    if (!schemas.includes(schema)) throw schemaNotExposed(schema, schemas);
    if (record.table === '') {
      if (!reading) throw new PostgrestError(405, 'PGRST117', `Unsupported HTTP method: ${record.method}`);
      // Supabase answers the OpenAPI root only to a secret key since March 2026
      // (https://supabase.com/changelog/42949-breaking-change-removing-access-to-openapi-spec-via-the-anon-key).
      if (apikey !== key) return gateway(403, 'Access to schema is forbidden', 'Accessing the schema via the Data API is only allowed using a secret API key.');
      const tables = roles ? await privileged([...cache.values()], role) : [...cache.values()];
      return { status: 200, body: JSON.stringify(openApiDocument(tables, schema, url.host)), headers: { 'Content-Type': 'application/openapi+json; charset=utf-8' } };
    }
    if (record.table.includes('/')) throw new PostgrestError(404, 'PGRST125', 'Invalid path specified in request URL');
    const table = cache.get(`${schema}.${record.table}`);
    if (!table) throw tableNotFound(schema, record.table);
    const q = parseQueryParams(url.searchParams);
    const prefer = parsePrefer(headers.prefer);
    const applied = ['resolution', 'return', 'count', 'missing'].filter((k) => prefer[k as keyof typeof prefer]).map((k) => `${k}=${prefer[k as keyof typeof prefer]}`);
    const base = { 'Content-Type': JSON_TYPE, ...(applied.length ? { 'Preference-Applied': applied.join(', ') } : {}) };
    const context = { headers, method: record.method, path: url.pathname, role };

    if (reading) {
      const range = /^(\d+)-(\d*)$/.exec(headers.range ?? '');
      const offset = q.offset ?? (range ? Number(range[1]) : 0);
      const asked = q.limit ?? (range?.[2] ? Number(range[2]) - offset + 1 : undefined);
      // db-max-rows caps every read, asked for or not: Supabase sets it to 1,000 (API settings, "Max rows";
      // https://postgrest.org/en/stable/references/configuration.html#db-max-rows).
      const limit = maxRows === null ? asked : Math.min(asked ?? maxRows, maxRows);
      const [page, total] = await transaction(context, true, async (client) => {
        const rows = (await client.query<{ body: string; n: number }>(statement(readStatement(table, q, { offset, limit })))).rows[0]!;
        const counted = prefer.count ? (await client.query<{ n: number }>(statement(countStatement(table, q)))).rows[0]!.n : undefined;
        return [rows, counted] as const;
      });
      const contentRange = page.n > 0 ? `${offset}-${offset + page.n - 1}/${total ?? '*'}` : `*/${total ?? '*'}`;
      if ((headers.accept ?? '').includes('application/vnd.pgrst.object+json')) {
        if (page.n !== 1) throw new PostgrestError(406, 'PGRST116', 'Cannot coerce the result to a single JSON object', `The result contains ${page.n} rows`);
        const object = page.body.slice(1, -1).trim();
        return { status: 200, body: object, headers: { ...base, 'Content-Type': 'application/vnd.pgrst.object+json; charset=utf-8', 'Content-Range': contentRange } };
      }
      const partial = total !== undefined && page.n < total;
      return { status: partial ? 206 : 200, body: page.body, headers: { ...base, 'Content-Range': contentRange } };
    }

    let result: { n: number; inserted: number; body: string | null };
    if (record.method === 'POST' || record.method === 'PATCH') {
      const { text, rows } = parseBody(body);
      if (record.method === 'PATCH' && (rows.length !== 1 || text.trimStart().startsWith('['))) throw invalidBody('Payload must be a single JSON object for PATCH');
      const columns = q.columns ?? Object.keys(rows[0] ?? {});
      if (!q.columns && rows.some((r) => !sameKeys(r, columns))) throw invalidBody('All object keys must match');
      requireColumns(table, columns);
      if (prefer.missing === 'default') throw new PostgrestError(400, 'PGRST127', 'Feature not implemented', 'the PostgREST stand-in does not implement missing=default');
      if (record.method === 'PATCH') {
        requireFilters(q, 'UPDATE');
        result = columns.length === 0 ? { n: 0, inserted: 0, body: '[]' } : await run(context, updateStatement(table, q, text, columns, prefer));
      } else {
        const array = text.trimStart().startsWith('[') ? text : `[${text}]`;
        result = rows.length === 0 || columns.length === 0 ? { n: 0, inserted: 0, body: '[]' } : await run(context, insertStatement(table, q, array, columns, prefer));
      }
    } else if (record.method === 'DELETE') {
      requireFilters(q, 'DELETE');
      result = await run(context, deleteStatement(table, q, prefer));
    } else {
      throw new PostgrestError(400, 'PGRST127', 'Feature not implemented', `the PostgREST stand-in does not implement ${record.method}`);
    }
    const representation = prefer.return === 'representation';
    // An upsert that inserted no row answers 200, one that inserted any 201 (PostgREST ≥ 12:
    // src/PostgREST/Response.hs, PR #2926 "fix: HTTP status responses for upserts").
    const upsert = prefer.resolution === 'merge-duplicates' || prefer.resolution === 'ignore-duplicates';
    const status = record.method === 'POST' ? (upsert && result.inserted === 0 ? 200 : 201) : representation ? 200 : 204;
    return {
      status,
      ...(representation ? { body: result.body ?? '[]' } : {}),
      headers: { ...base, 'Content-Range': `*/${prefer.count ? result.n : '*'}` },
    };
  }

  async function run(context: TxContext, s: Statement): Promise<{ n: number; inserted: number; body: string | null }> {
    return transaction(context, false, async (client) => (await client.query<{ n: number; inserted: number; body: string | null }>(statement(s))).rows[0]!);
  }

  /** The role the request's bearer token stands for; none sent: PostgREST's db-anon-role (anon, on Supabase). */
  function roleOf(headers: Record<string, string>, url: URL): ApiRole | undefined {
    const bearer = /^Bearer (.+)$/i.exec(headers.authorization ?? '')?.[1];
    if (bearer === undefined) return (headers.apikey ?? url.searchParams.get('apikey')) ? 'anon' : undefined;
    return roleOfToken(bearer, key);
  }

  /** openapi-mode follow-privileges (PostgREST's default): only tables the role may read or write. */
  async function privileged(tables: CachedTable[], role: ApiRole): Promise<CachedTable[]> {
    // By oid: looking a table up by name would need the authenticator's own USAGE on its schema.
    const { rows } = await pool.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY ($2) AND has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE')`,
      [role, schemas],
    );
    const allowed = new Set(rows.map((r) => `${r.schema}.${r.name}`));
    return tables.filter((t) => allowed.has(`${t.schema}.${t.name}`));
  }

  async function transaction<T>(context: TxContext, readOnly: boolean, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query(readOnly ? 'BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY' : 'BEGIN ISOLATION LEVEL READ COMMITTED');
      await client.query(
        `SELECT set_config('request.headers', $1, true), set_config('request.method', $2, true), set_config('request.path', $3, true), set_config('request.jwt.claims', $4, true)`,
        [JSON.stringify(context.headers), context.method, context.path, JSON.stringify({ role: context.role })],
      );
      if (roles) await client.query(`SET LOCAL ROLE ${context.role}`);
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      broken = await client.query('ROLLBACK').then(
        () => false,
        () => true,
      );
      throw error;
    } finally {
      client.release(broken);
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    key,
    anonKey: ANON_KEY,
    requests,
    count: (match) => requests.filter((r) => matches(r, match)).length,
    fail(times, response, match) {
      const resolved = typeof response === 'string' ? INJECTED[response] : response;
      for (let i = 0; i < times; i += 1) injections.push({ response: resolved, match });
    },
    delay(ms, times = Number.POSITIVE_INFINITY) {
      delays.push({ ms, times });
    },
    reset() {
      requests.length = 0;
      injections = [];
      delays = [];
    },
    async reloadSchema() {
      cache = await loadSchemaCache(pool, schemas);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.end();
    },
  };
}

interface TxContext {
  headers: Record<string, string>;
  method: string;
  path: string;
  role: ApiRole;
}

/** The roles made (as the URL's owner) and the URL of the `authenticator` login. */
async function asAuthenticator(databaseUrl: string): Promise<string> {
  const owner = new pg.Client({ connectionString: databaseUrl });
  await owner.connect();
  try {
    await createSupabaseRoles(owner);
  } finally {
    await owner.end();
  }
  const url = new URL(databaseUrl);
  url.username = 'authenticator';
  url.password = '';
  return url.toString();
}

function statement(s: Statement): pg.QueryConfig {
  return { text: s.sql, values: s.params };
}

function gateway(status: number, message: string, hint?: string): Reply {
  return { status, body: JSON.stringify(hint ? { message, hint } : { message }), headers: { 'Content-Type': JSON_TYPE } };
}

function parseBody(body: Buffer): { text: string; rows: Record<string, unknown>[] } {
  const text = body.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalidBody('Empty or invalid json');
  }
  const rows = Array.isArray(parsed) ? parsed : [parsed];
  if (!rows.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r))) throw invalidBody('Empty or invalid json');
  return { text, rows: rows as Record<string, unknown>[] };
}

function sameKeys(row: Record<string, unknown>, columns: string[]): boolean {
  const keys = Object.keys(row);
  return keys.length === columns.length && keys.every((k) => columns.includes(k));
}

function countRows(body: Buffer): number {
  if (body.length === 0) return 0;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as unknown;
    return Array.isArray(parsed) ? parsed.length : 1;
  } catch {
    return 0;
  }
}
