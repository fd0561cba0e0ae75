import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { startPostgresCluster, type PostgresCluster, type PostgresClusterOptions } from '../test/support/postgres-cluster.js';
import { withClient } from './backlog.js';
import { stopOnSignal } from './report.js';

export interface Workspace {
  /** The benchmark's temporary directory. */
  dir: string;
  /** Starts the benchmark's private PostgreSQL cluster (one per workspace). */
  start(options?: PostgresClusterOptions): Promise<PostgresCluster>;
  /** Stops the cluster and removes the directory (kept when `keep`); also run on SIGINT and SIGTERM. */
  stop(): Promise<void>;
}

/** What every benchmark sets up first and takes down last, whatever ends it. */
export function benchWorkspace(name: string, say: (text: string) => void, keep = false): Workspace {
  const dir = mkdtempSync(join(os.tmpdir(), `cdc-sync-bench-${name}-`));
  let cluster: PostgresCluster | undefined;
  const stop = async () => {
    const c = cluster;
    cluster = undefined;
    await c?.stop();
    if (keep) say(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
  stopOnSignal(stop, say);
  return {
    dir,
    start: async (options) => (cluster = await startPostgresCluster(options)),
    stop,
  };
}

/** Creates `databases` on the cluster; returns the server's version (serverVersion). */
export async function createDatabases(cluster: PostgresCluster, databases: string[]): Promise<string> {
  await withClient(cluster.url('postgres'), async (client) => {
    for (const db of databases) await client.query(`CREATE DATABASE ${db}`);
  });
  return serverVersion(cluster);
}

/** The server's version as the reports name it (`PostgreSQL 15.18`). */
export function serverVersion(cluster: PostgresCluster): Promise<string> {
  return withClient(cluster.url('postgres'), async (client) => {
    const { rows } = await client.query<{ version: string }>('SELECT version()');
    return rows[0]!.version.replace(/ on .*/, '').replace(/ \(.*/, '');
  });
}
