import type { Row } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { MssqlClient } from '../../db/mssql/client.js';
import { splitTable } from '../../db/mssql/identifiers.js';
import type { StreamContext } from '../../streams/context.js';
import { checkSourceColumns } from '../check-columns.js';
import type { RetriedRead } from '../read-with-retry.js';
import type { CdcRow } from './cdc-changes.js';
import {
  AGENT_JOBS,
  CAPTURE_INSTANCES,
  CAPTURED_COLUMNS,
  COMMIT_TIMES,
  MAX_LSN,
  MIN_LSN,
  PENDING_TRANSACTIONS,
  READ_WINDOW,
  TABLE_EXISTS,
  changedSinceCopySql,
  columnList,
  readChanges,
} from './cdc-queries.js';
import { Lsn } from './lsn.js';
import { TableSnapshot } from './snapshot.js';

export interface Instance {
  name: string;
  start: Lsn;
  read: ReturnType<typeof readChanges>;
}

export interface CapturedTable {
  /** schema.table as configured */
  source: string;
  key: string[];
  instances: Instance[];
  snapshot: TableSnapshot;
}

/**
 * The mssql-cdc source's reads of SQL Server's CDC objects: capture
 * instances and their columns, the LSN functions, the change tables and
 * cdc.lsn_time_mapping.
 */
export class CdcReads {
  constructor(
    private readonly client: () => MssqlClient,
    private readonly query: RetriedRead,
  ) {}

  /** The capture job's presence and the cleanup job's retention in minutes, where msdb can be read. */
  async agentJobs(context: StreamContext): Promise<number | null> {
    let jobs: { capture_jobs: number; retention_minutes?: number | null } | undefined;
    try {
      [jobs] = await this.client().query<{ capture_jobs: number; retention_minutes?: number | null }>(AGENT_JOBS);
    } catch (error) {
      const code = (error as { context?: { code?: string } }).context?.code;
      if (code !== '229' && code !== '208') throw error;
      context.log.info({ code }, 'msdb.dbo.cdc_jobs cannot be read (no rights in msdb, or Azure SQL Database): the capture job check and the retention headroom are skipped');
      return null;
    }
    if (!jobs?.capture_jobs) context.log.warn('no CDC capture job exists for this database: changes will not be published');
    return jobs?.retention_minutes ?? null;
  }

  async describe(table: TableConfig, path: string): Promise<CapturedTable> {
    const client = this.client();
    const [schema, name] = splitTable(table.source);
    const params = { schema: { type: 'nvarchar' as const, value: schema }, table: { type: 'nvarchar' as const, value: name } };
    const [exists] = await this.query(() => client.query<{ primary_key: string | null }>(TABLE_EXISTS, params));
    if (!exists) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
    const key = table.key ?? (JSON.parse(exists.primary_key ?? '[]') as { name: string }[]).map((c) => c.name);
    if (key.length === 0) throw new ConfigError(`${path}.key: ${table.source} has no primary key; name the key columns`);
    const found = await this.query(() =>
      client.query<{ capture_instance: string; object_id: number; change_table: string; start_lsn: Buffer }>(CAPTURE_INSTANCES, params),
    );
    if (found.length === 0) {
      throw new ConfigError(`${path}.source: change data capture is not enabled for ${table.source}; run sys.sp_cdc_enable_table (see \`cdc-sync init-sql\`)`);
    }
    const instances: Instance[] = [];
    for (const instance of found) {
      const columns = await this.query(() =>
        client.query<{ column_name: string; column_type: string }>(CAPTURED_COLUMNS, { object_id: { type: 'int', value: instance.object_id } }),
      );
      for (const [j, k] of key.entries()) {
        if (!columns.some((c) => c.column_name === k)) throw new ConfigError(`${path}.key[${j}]: column ${k} is not captured for ${table.source}`);
      }
      if (instance === found.at(-1)) {
        checkSourceColumns({ ...table, key: undefined }, path, columns.map((c) => c.column_name), key, ' (or is not captured)');
      }
      instances.push({ name: instance.capture_instance, start: Lsn.fromBuffer(instance.start_lsn), read: readChanges(instance.change_table, columnList(columns)) });
    }
    // A row changed after the copy's LSN is left out of it: the stream brings its changes in order.
    const changed = { sql: changedSinceCopySql(found.map((i) => i.change_table), key), params: {} };
    return { source: table.source, key, instances, snapshot: new TableSnapshot(client, table.source, key, changed) };
  }

  async maxLsn(): Promise<Lsn | null> {
    const [row] = await this.query(() => this.client().query<{ lsn: Buffer | null }>(MAX_LSN));
    return row?.lsn ? Lsn.fromBuffer(row.lsn) : null;
  }

  async minLsn(instance: Instance): Promise<Lsn> {
    const [row] = await this.query(() => this.client().query<{ lsn: Buffer | null }>(MIN_LSN, { instance: { type: 'nvarchar', value: instance.name } }));
    return row?.lsn ? Lsn.fromBuffer(row.lsn) : Lsn.zero;
  }

  /** The commit LSN that ends the next read: `readLimit` transactions on, or the published max. */
  async windowEnd(after: Lsn, max: Lsn, readLimit: number): Promise<Lsn> {
    if (after.compare(max) >= 0) return after;
    const [row] = await this.query(() =>
      this.client().query<{ lsn: Buffer | null }>(READ_WINDOW, {
        transactions: { type: 'int', value: Math.max(1, readLimit) },
        after_lsn: { type: 'binary10', value: after.toBuffer() },
        max_lsn: { type: 'binary10', value: max.toBuffer() },
      }),
    );
    return row?.lsn ? Lsn.fromBuffer(row.lsn) : max;
  }

  /**
   * Changes of one table committed in (after, upto], across its capture
   * instances: an older instance up to the LSN before the newer one's start
   * (by the read's bounds, so nothing it holds past that point is read or
   * counted), the newer one from there on. `gap`: the minimum LSN of the
   * instance that should have held the changes right after `after`.
   */
  async readTable(table: CapturedTable, after: Lsn, upto: Lsn, reportGaps = true): Promise<CdcRow[] | { gap: Lsn }> {
    const rows: CdcRow[] = [];
    let readAny = false;
    for (const [i, instance] of table.instances.entries()) {
      const next = table.instances[i + 1];
      const to = next ? Lsn.min(upto, next.start.predecessor()) : upto;
      if (to.compare(after) <= 0) continue; // this instance's range is behind us, or the window ends before it
      const min = await this.minLsn(instance);
      // The first instance still to read must hold every change after `after`:
      // if its minimum moved past it, the cleanup job removed some of them.
      // (The origin marker has no such duty: it is read from what is there.)
      if (reportGaps && !readAny && min.predecessor().compare(after) > 0) return { gap: min };
      readAny = true;
      const from = Lsn.max(after, min.predecessor());
      if (to.compare(from) <= 0) continue;
      const found = await this.query(() =>
        this.client().query<Row & { __$start_lsn: Buffer; __$command_id: number; __$seqval: Buffer; __$operation: number }>(instance.read, {
          after_lsn: { type: 'binary10', value: from.toBuffer() },
          to_lsn: { type: 'binary10', value: to.toBuffer() },
        }),
      );
      for (const r of found) {
        const { __$start_lsn, __$command_id, __$seqval, __$operation, ...row } = r;
        rows.push({ table: table.source, lsn: Lsn.fromBuffer(__$start_lsn), commandId: __$command_id, seqval: Lsn.fromBuffer(__$seqval), operation: __$operation, row: row as Row });
      }
    }
    return rows;
  }

  async commitTimes(rows: CdcRow[]): Promise<Map<string, Date>> {
    if (rows.length === 0) return new Map();
    const found = await this.query(() =>
      this.client().query<{ start_lsn: Buffer; tran_end_time: Date }>(COMMIT_TIMES, {
        from_lsn: { type: 'binary10', value: rows[0]!.lsn.toBuffer() },
        to_lsn: { type: 'binary10', value: rows.at(-1)!.lsn.toBuffer() },
      }),
    );
    return new Map(found.map((r) => [Lsn.fromBuffer(r.start_lsn).toString(), r.tran_end_time]));
  }

  /** Transactions published after `after`, and the commit time of the one at `after`. */
  async pending(after: Lsn): Promise<{ pending: number; checkpoint_time: Date | null } | undefined> {
    const [row] = await this.query(() =>
      this.client().query<{ pending: number; checkpoint_time: Date | null }>(PENDING_TRANSACTIONS, {
        after_lsn: { type: 'binary10', value: after.toBuffer() },
      }),
    );
    return row;
  }
}
