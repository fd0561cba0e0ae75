import type { ChangeEvent, Op, RejectedChange, Row } from '../../core/change-event.js';
import { PermanentError } from '../../core/errors.js';
import { formatLsn } from './wal-lsn.js';
import type { PgOutputMessage, RelationColumn, TupleColumn } from './wal-protocol.js';
import { fromText } from './wal-values.js';

/** The table the PostgreSQL sink updates in each of its transactions (when it exists): the WAL source drops those transactions. */
export const ORIGIN_MARKER_TABLE = 'cdc_sync.origin_marker';

export interface WalTransaction {
  endLsn: bigint;
  commitTime: Date;
  events: ChangeEvent[];
  rejected: RejectedChange[];
  /** The transaction wrote cdc_sync.origin_marker: cdc-sync's own write, to be dropped. */
  ownWrite: boolean;
}

interface Relation {
  qualified: string;
  columns: RelationColumn[];
}

export interface AssemblerOptions {
  /** `schema.table` → configured source name and key columns (empty: the relation's replica identity key). */
  tables: Map<string, { source: string; key: string[] }>;
  truncate: 'dead-letter' | 'ignore';
  stream: string;
}

/**
 * Turns the pgoutput message sequence into whole transactions of
 * ChangeEvents. Relation messages (sent before the first change of a table
 * and again after its schema changed) replace the column list.
 */
export class TransactionAssembler {
  private readonly relations = new Map<number, Relation>();
  private current: (WalTransaction & { position: string }) | null = null;

  constructor(private readonly options: AssemblerOptions) {}

  /** Inside a transaction (Begin seen, Commit not yet). */
  get open(): boolean {
    return this.current !== null;
  }

  /** Feeds one message; returns the transaction its Commit completes. */
  push(message: PgOutputMessage): WalTransaction | null {
    switch (message.tag) {
      case 'relation':
        this.relations.set(message.relationId, { qualified: `${message.schema}.${message.name}`, columns: message.columns });
        return null;
      case 'begin':
        // The final LSN is the commit's start; the checkpoint is the end, known at Commit (events get it then).
        this.current = { endLsn: 0n, commitTime: message.commitTime, events: [], rejected: [], ownWrite: false, position: '' };
        return null;
      case 'commit': {
        const tx = this.current;
        this.current = null;
        if (!tx) return null;
        tx.endLsn = message.endLsn;
        const position = formatLsn(message.endLsn);
        for (const e of tx.events) e.position = position;
        for (const r of tx.rejected) r.position = position;
        return { endLsn: tx.endLsn, commitTime: tx.commitTime, events: tx.events, rejected: tx.rejected, ownWrite: tx.ownWrite };
      }
      case 'insert':
      case 'update':
      case 'delete':
        this.change(message);
        return null;
      case 'truncate':
        this.truncate(message.relationIds, message.cascade);
        return null;
      default:
        return null;
    }
  }

  private relation(id: number): Relation {
    const relation = this.relations.get(id);
    if (!relation) throw new Error(`pgoutput: change for relation ${id} before its Relation message`);
    return relation;
  }

  private change(message: Extract<PgOutputMessage, { tag: 'insert' | 'update' | 'delete' }>): void {
    const tx = this.current;
    if (!tx) return;
    const relation = this.relation(message.relationId);
    if (relation.qualified === ORIGIN_MARKER_TABLE) {
      tx.ownWrite = true;
      return;
    }
    const table = this.options.tables.get(relation.qualified);
    if (!table) return; // in the publication, not in this stream
    const keyColumns = table.key.length > 0 ? table.key : relation.columns.filter((c) => c.key).map((c) => c.name);
    const base = { table: table.source, position: '', commitTime: tx.commitTime };
    const keyOf = (row: Row): Row => Object.fromEntries(keyColumns.map((k) => [k, row[k] ?? null]));
    if (message.tag === 'insert') {
      const row = toRow(relation, message.newTuple);
      tx.events.push({ ...base, op: 'insert', key: keyOf(row), row, before: null });
      return;
    }
    if (message.tag === 'delete') {
      const before = toRow(relation, message.oldTuple, message.oldKind === 'K');
      tx.events.push({ ...base, op: 'delete', key: keyOf(before), row: null, before });
      return;
    }
    const row = toRow(relation, message.newTuple);
    // An unchanged TOAST value is missing from the new tuple; the full old image (REPLICA IDENTITY FULL) may hold it.
    const before = message.oldTuple ? toRow(relation, message.oldTuple, message.oldKind === 'K') : null;
    const key = keyOf(row);
    if (before && message.oldKind === 'K') {
      const oldKey = keyOf(before);
      if (JSON.stringify(oldKey) !== JSON.stringify(key)) {
        // The key itself changed: the old row goes away, the new one comes in.
        tx.events.push({ ...base, op: 'delete', key: oldKey, row: null, before });
        tx.events.push({ ...base, op: 'insert', key, row, before: null });
        return;
      }
    } else if (before && message.oldKind === 'O') {
      const oldKey = keyOf(before);
      if (JSON.stringify(oldKey) !== JSON.stringify(key)) tx.events.push({ ...base, op: 'delete', key: oldKey, row: null, before });
    }
    const op: Op = 'update';
    tx.events.push({ ...base, op, key, row, before });
  }

  private truncate(relationIds: number[], cascade: boolean): void {
    const tx = this.current;
    if (!tx || this.options.truncate === 'ignore') return;
    for (const id of relationIds) {
      const relation = this.relation(id);
      const table = this.options.tables.get(relation.qualified);
      if (!table) continue;
      tx.rejected.push({
        table: table.source,
        key: null,
        payload: JSON.stringify({ truncate: relation.qualified, cascade }),
        error: new PermanentError(
          `TRUNCATE of ${relation.qualified} was not applied to the sink (source.truncate: dead-letter); ` +
            'empty the target table by hand or re-copy it, then resolve this dead letter',
          { reason: 'other', context: { stream: this.options.stream, table: table.source } },
        ),
        position: '',
      });
    }
  }
}

/** Columns sent as "unchanged TOAST" are left out, so the sink never overwrites them; `keyOnly`: only key columns carry values. */
function toRow(relation: Relation, tuple: TupleColumn[], keyOnly = false): Row {
  const row: Row = {};
  for (const [i, column] of relation.columns.entries()) {
    const value = tuple[i];
    if (!value || value.kind === 'unchanged') continue;
    if (keyOnly && !column.key) continue;
    row[column.name] = value.kind === 'null' ? null : fromText(column.typeOid, value.value);
  }
  return row;
}
