import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MssqlClient, MssqlConnect, Params, Query } from '../../../src/db/mssql/client.js';
import { classifyMssqlError } from '../../../src/db/mssql/errors.js';
import { tsqlSyntaxErrors } from '../tsql/tsql-grammar.js';
import { decode, encode } from './codec.js';

/** Plain parameter values, as the statement would see them. */
export type Values = Record<string, unknown>;
export type Handler = (values: Values, query: Query) => unknown[];

/** An error shaped like the driver's RequestError: `number` is SQL Server's error number. */
export class SqlServerError extends Error {
  constructor(
    message: string,
    readonly number: number,
  ) {
    super(message);
  }
}

/**
 * A stand-in for SQL Server at the driver boundary: it answers each named
 * statement of cdc-sync's query modules with rows shaped as the `mssql`
 * driver returns them (binary(10) as 10-byte Buffers, uniqueidentifier as
 * upper-case text, datetime as Date, bigint as text). Models register
 * handlers per statement name; an unknown statement is a test failure.
 */
export class FakeSqlServer {
  readonly handlers = new Map<string, Handler>();
  /** Every statement executed, in order. */
  readonly executed: { name: string; values: Values; types: Record<string, string> }[] = [];
  /** Fail the next statements with these errors (deadlocks, timeouts...). */
  readonly failures: { name?: string; error: Error }[] = [];
  /** Models register a snapshot taker: a transaction that throws restores every model. */
  readonly snapshots: (() => () => void)[] = [];
  /**
   * The only login the server accepts, when set (SQL authentication). A wrong
   * one fails the connection as the driver reports it: tedious ends the login
   * with a ConnectionError, code 'ELOGIN', carrying the server's message
   * (tedious src/connection.ts, the LOGIN7 response handler; error 18456
   * "Login failed for user '…'.", learn.microsoft.com: MSSQLSERVER_18456), and
   * mssql's pool.connect() rejects with it (mssql lib/tedious/connection-pool.js).
   */
  login: { user: string; password: string } | undefined;
  private server: Server | undefined;
  /** The one transaction open over the HTTP bridge, with what undoes it. */
  private open: { id: number; restores: (() => void)[]; idle: NodeJS.Timeout; release: () => void } | undefined;
  private transactions = 0;
  /** How long a transaction of the bridge may wait for its next statement before it counts as abandoned. */
  transactionIdleMs = 5_000;
  private turn: Promise<void> = Promise.resolve();

  /** Checks a connection URL's user and password against `login`. */
  checkLogin(url: string): void {
    if (!this.login) return;
    const u = new URL(url);
    const user = decodeURIComponent(u.username);
    if (user !== this.login.user || decodeURIComponent(u.password) !== this.login.password) {
      throw Object.assign(new Error(`Login failed for user '${user}'.`), { name: 'ConnectionError', code: 'ELOGIN' });
    }
  }

  execute(query: Query, params: Params = {}): unknown[] {
    const values = Object.fromEntries(Object.entries(params).map(([k, p]) => [k, p.value]));
    this.executed.push({ name: query.name, values, types: Object.fromEntries(Object.entries(params).map(([k, p]) => [k, p.type])) });
    // SQL Server parses a batch before it runs any of it, and refuses text that does not parse (Msg 102, "Incorrect
    // syntax near …"). The stand-in answers by statement name, so without this check it would answer any text.
    const syntax = tsqlSyntaxErrors(query.sql);
    if (syntax.length > 0) throw new SqlServerError(`Incorrect syntax in ${query.name} (T-SQL grammar, test/support/tsql): ${syntax.slice(0, 3).join('; ')}`, 102);
    const failure = this.failures.findIndex((f) => !f.name || f.name === query.name);
    if (failure >= 0) throw this.failures.splice(failure, 1)[0]!.error;
    const handler = this.handlers.get(query.name);
    if (!handler) throw new Error(`the fake SQL Server has no answer for statement ${query.name}`);
    return structuredClone(handler(values, query));
  }

  /** In-process client, for driver-boundary tests. */
  readonly connect: MssqlConnect = async (url) => {
    try {
      this.checkLogin(url);
    } catch (error) {
      throw classifyMssqlError(error);
    }
    return this.client();
  };

  client(): MssqlClient {
    const run = async <T>(query: Query, params?: Params): Promise<T[]> => {
      try {
        return this.execute(query, params) as T[];
      } catch (error) {
        throw classifyMssqlError(error);
      }
    };
    return {
      query: run,
      transaction: async (work) => {
        const restores = this.snapshots.map((take) => take());
        try {
          return await work({ query: run });
        } catch (error) {
          for (const restore of restores) restore();
          throw classifyMssqlError(error);
        }
      },
      close: async () => undefined,
    };
  }

  /**
   * Runs `work` (an application's transaction in a test) when no transaction
   * of the bridge is open. SQL Server's locks make writers of the same rows
   * wait for each other; the stand-in makes every transaction wait for the
   * open one, a stricter order that SQL Server may also produce.
   */
  async exclusive<T>(work: () => Promise<T> | T): Promise<T> {
    const release = await this.take();
    try {
      return await work();
    } finally {
      release();
    }
  }

  private take(): Promise<() => void> {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const before = this.turn;
    this.turn = before.then(() => done);
    return before.then(() => release);
  }

  /**
   * One request of the bridge. A transaction (begin, its statements, commit
   * or rollback) holds the server; one left without a statement for
   * `transactionIdleMs` belongs to a process that died (kill -9) and is
   * rolled back, as SQL Server rolls back the transaction of a dropped
   * connection.
   */
  private async serve(
    request: { query: Query; params: Params; login?: string; tx?: number; begin?: true; commit?: number; rollback?: number },
    gone: () => boolean = () => false,
  ): Promise<unknown> {
    if (request.login !== undefined) {
      this.checkLogin(request.login);
      return [];
    }
    if (request.begin) {
      const release = await this.take();
      // Its client died while the BEGIN waited for its turn: no session is left to hold the transaction.
      if (gone()) {
        release();
        throw Object.assign(new Error('the connection was reset'), { code: 'ECONNRESET' });
      }
      const id = (this.transactions += 1);
      this.open = { id, restores: this.snapshots.map((take) => take()), idle: setTimeout(() => this.end(id, false), this.transactionIdleMs), release };
      return [{ tx: id }];
    }
    if (request.commit !== undefined || request.rollback !== undefined) {
      this.end(request.commit ?? request.rollback!, request.commit !== undefined);
      return [];
    }
    if (request.tx !== undefined) {
      const open = this.open;
      if (open?.id !== request.tx) throw Object.assign(new Error('the connection was reset; its transaction was rolled back'), { code: 'ECONNRESET' });
      open.idle.refresh();
      try {
        const rows = this.execute(request.query, request.params);
        // Idle from the answer on: a statement the stand-in took long to check (its first parse) is not the client's silence.
        open.idle.refresh();
        return rows;
      } catch (error) {
        // SET XACT_ABORT ON semantics, as the driver's transaction ends on any error.
        this.end(open.id, false);
        throw error;
      }
    }
    return this.exclusive(() => this.execute(request.query, request.params));
  }

  /**
   * The client process died (kill -9): its connections drop, and SQL Server
   * rolls back the open transaction of each at once (the session ends; see
   * https://learn.microsoft.com/sql/t-sql/language-elements/transactions-transact-sql).
   */
  dropConnections(): void {
    if (this.open) this.end(this.open.id, false);
  }

  private end(id: number, commit: boolean): void {
    const open = this.open;
    if (open?.id !== id) return;
    clearTimeout(open.idle);
    if (!commit) for (const restore of open.restores) restore();
    this.open = undefined;
    open.release();
  }

  /** Serves the statements over HTTP for a CLI process (see driver.ts); returns its URL. */
  async listen(): Promise<string> {
    this.server = createServer((request, response) => {
      let body = '';
      request.on('data', (d: Buffer) => (body += d.toString()));
      request.on('end', () => {
        const reply = (payload: unknown) => {
          response.setHeader('content-type', 'application/json');
          response.end(JSON.stringify(encode(payload)));
        };
        let dropped = false;
        response.on('close', () => (dropped = !response.writableEnded));
        this.serve(decode(JSON.parse(body)) as Parameters<FakeSqlServer['serve']>[0], () => dropped).then(
          (rows) => reply({ rows }),
          (error: Error & { number?: number; code?: string }) => reply({ error: { message: error.message, number: error.number, code: error.code } }),
        );
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `fake-mssql://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
