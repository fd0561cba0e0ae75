// Throw-away PostgreSQL server for tests: initdb into a temp dir, run `postgres`
// on a free localhost port, tear everything down again in stop().
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, logTail } from './free-port.js';

const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface PostgresCluster {
  host: string;
  port: number;
  user: string;
  dataDir: string;
  url(database: string): string;
  stop(): Promise<void>;
  /** Stops the server (pg_ctl's `fast` by default, `immediate` to crash it) and starts it again on the same port. */
  restart(mode?: 'fast' | 'immediate'): Promise<void>;
}

export interface PostgresClusterOptions {
  port?: number;
  extraSettings?: Record<string, string>;
}

interface Binaries {
  initdb: string;
  postgres: string;
  pgCtl: string;
}

const HOST = '127.0.0.1';
const USER = 'postgres';
const STARTUP_TIMEOUT_MS = 30_000;

const BASE_SETTINGS: Record<string, string> = {
  listen_addresses: HOST,
  // Durability is irrelevant for a throw-away test cluster; these make it much faster.
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  // Logical decoding (CDC) needs wal_level=logical plus slots/senders.
  wal_level: 'logical',
  max_wal_senders: '20',
  max_replication_slots: '20',
  max_connections: '300',
  shared_buffers: '128MB',
  // TLS for clients that ask (hosted servers such as Supabase require it); the others connect in the clear as before.
  ssl: 'on',
};

/**
 * A self-signed certificate for the server (server.crt and server.key in the
 * data directory, PostgreSQL's defaults), made by the server's OS user so the
 * key is its own: PostgreSQL refuses a key others can read.
 */
async function makeCertificate(dataDir: string, run: (bin: string, args: string[]) => Promise<unknown>): Promise<void> {
  await run('openssl', ['req', '-new', '-x509', '-days', '7', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-subj', `/CN=${HOST}`, '-keyout', 'server.key', '-out', 'server.crt']);
  await run('chmod', ['600', 'server.key']);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** Debian layout first (/usr/lib/postgresql/<highest version>/bin), then PATH. */
function findBinaries(): Binaries {
  const root = '/usr/lib/postgresql';
  const versions = (fs.existsSync(root) ? fs.readdirSync(root) : [])
    .filter((v) => isExecutable(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  if (versions[0] !== undefined) {
    const bin = path.join(root, versions[0], 'bin');
    return { initdb: path.join(bin, 'initdb'), postgres: path.join(bin, 'postgres'), pgCtl: path.join(bin, 'pg_ctl') };
  }
  const initdb = onPath('initdb');
  const postgres = onPath('postgres');
  const pgCtl = onPath('pg_ctl');
  if (initdb && postgres && pgCtl) return { initdb, postgres, pgCtl };
  throw new Error(
    'PostgreSQL server binaries not found (initdb, postgres, pg_ctl): install the Debian package ' +
      '`postgresql` (`apt-get install -y postgresql`).',
  );
}

// initdb and postgres refuse to run as root, and sessions/CI run as root. In that case the
// data dir is handed to the `postgres` OS user (created by the Debian package) and every
// server binary is started through `runuser` (no password/PAM prompt, unlike su/sudo).
const runningAsRoot = process.getuid?.() === 0;

function asServerUser(bin: string, args: string[]): [string, string[]] {
  return runningAsRoot ? ['runuser', ['-u', USER, '--', bin, ...args]] : [bin, args];
}

function chownToServerUser(dir: string): void {
  let uid: number;
  let gid: number;
  try {
    uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    gid = Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim());
  } catch {
    throw new Error(
      `Running as root but there is no "${USER}" OS user to run PostgreSQL as: install the ` +
        'Debian package `postgresql` (`apt-get install -y postgresql`) or run the tests as a normal user.',
    );
  }
  // (The parents of os.tmpdir() must be traversable by that user; /tmp is.)
  fs.chownSync(dir, uid, gid);
}


/**
 * Resolves once *our* server accepts sessions; rejects while it is down or still starting.
 * Checks data_directory because another server may be listening on the port we picked
 * (ours then fails to bind and exits, which the caller notices).
 */
async function checkReady(port: number, dataDir: string): Promise<void> {
  const client = new pg.Client({ host: HOST, port, user: USER, database: 'postgres', connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ data_directory: string }>('SHOW data_directory');
    if (rows[0]?.data_directory !== dataDir) throw new Error(`port ${port} is served by another PostgreSQL`);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function startPostgresCluster(options: PostgresClusterOptions = {}): Promise<PostgresCluster> {
  const bins = findBinaries();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-test-'));
  const logFile = path.join(dataDir, 'server.log');
  let port = options.port ?? (await freePort());
  let server: { child: ChildProcess; exited: Promise<void>; hasExited: boolean } | undefined;
  let watchdog: ChildProcess | undefined;
  let stopped = false;

  const run = async (bin: string, args: string[]) => {
    const [cmd, cmdArgs] = asServerUser(bin, args);
    try {
      return await execFileAsync(cmd, cmdArgs, { cwd: dataDir });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`${path.basename(bin)} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
    }
  };

  const launch = async () => {
    const settings = { ...BASE_SETTINGS, ...options.extraSettings };
    const args = ['-D', dataDir, '-p', String(port), '-k', dataDir];
    for (const [key, value] of Object.entries(settings)) args.push('-c', `${key}=${value}`);
    const [cmd, cmdArgs] = asServerUser(bins.postgres, args);
    // The server log goes straight to a file (opened by us, so it works even when the
    // server runs as another user); the child gets its own copy of the descriptor.
    const logFd = fs.openSync(logFile, 'a');
    const child = spawn(cmd, cmdArgs, { cwd: dataDir, stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    child.unref(); // a forgotten stop() must not keep the test process alive
    const current = {
      child,
      hasExited: false,
      exited: new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', (err) => {
          fs.appendFileSync(logFile, `spawn ${cmd} failed: ${err.message}\n`);
          resolve();
        });
      }),
    };
    void current.exited.then(() => (current.hasExited = true));
    server = current;

    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (;;) {
      if (current.hasExited) {
        throw new Error(`PostgreSQL exited during startup (exit code ${child.exitCode}):\n${logTail(logFile)}`);
      }
      try {
        await checkReady(port, dataDir);
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          await shutdown();
          throw new Error(
            `PostgreSQL did not accept connections on ${HOST}:${port} within ${STARTUP_TIMEOUT_MS / 1000}s ` +
              `(${(err as Error).message}):\n${logTail(logFile)}`,
          );
        }
      }
      await sleep(100);
    }
  };

  /** Stop the server process but keep the data directory. */
  const shutdown = async (first: 'fast' | 'immediate' = 'fast') => {
    const current = server;
    server = undefined;
    if (!current || current.hasExited) return;
    for (const mode of first === 'fast' ? ['fast', 'immediate'] : ['immediate']) {
      try {
        await run(bins.pgCtl, ['stop', '-D', dataDir, '-m', mode, '-w', '-t', '30']);
        break;
      } catch {
        // Not running any more (or stuck): fall through to the next mode / the wait below.
      }
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([current.exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))]);
    clearTimeout(timer);
  };

  const removeDataDir = () => fs.rmSync(dataDir, { recursive: true, force: true });

  try {
    if (runningAsRoot) chownToServerUser(dataDir);
    // --no-sync: nothing to flush for a throw-away cluster; saves seconds on slow disks.
    await run(bins.initdb, ['-D', dataDir, '--auth=trust', '-U', USER, '--encoding=UTF8', '--locale=C', '--no-sync']);
    await makeCertificate(dataDir, run);
    for (let attempt = 1; ; attempt++) {
      try {
        await launch();
        break;
      } catch (err) {
        // Another process may have grabbed the port we picked; retry on a new one.
        const portTaken = /could not bind|Address already in use/i.test((err as Error).message);
        if (options.port !== undefined || !portTaken || attempt >= 3) throw err;
        port = await freePort();
      }
    }
  } catch (err) {
    await shutdown().catch(() => {});
    removeDataDir();
    throw err;
  }

  // Best effort against leaked servers: a detached shell waits for this process to die
  // (however it dies, even SIGKILL), then stops the server and removes the data dir.
  // stop() kills the watchdog when it is no longer needed.
  const [stopCmd, stopArgs] = asServerUser(bins.pgCtl, ['stop', '-D', dataDir, '-m', 'immediate']);
  watchdog = spawn(
    'sh',
    [
      '-c',
      'p=$1; d=$2; shift 2; while kill -0 "$p" 2>/dev/null; do sleep 1; done; "$@" >/dev/null 2>&1; rm -rf "$d"',
      'pg-test-watchdog',
      String(process.pid),
      dataDir,
      stopCmd,
      ...stopArgs,
    ],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.unref();

  return {
    host: HOST,
    get port() {
      return port;
    },
    user: USER,
    dataDir,
    url: (database) => `postgres://${USER}@${HOST}:${port}/${encodeURIComponent(database)}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (watchdog?.pid !== undefined && watchdog.exitCode === null) watchdog.kill();
      await shutdown();
      removeDataDir();
    },
    async restart(mode = 'fast') {
      if (stopped) throw new Error('restart() after stop()');
      await shutdown(mode);
      await launch();
    },
  };
}
