import type { ChangeEvent, Op, RejectedChange, Row } from '../../core/change-event.js';
import { PermanentError } from '../../core/errors.js';
import { formatLsn } from './wal-lsn.js';
import { decodePgOutput, insertRow, type PgOutputMessage, type RelationColumn, type TupleColumn } from './wal-protocol.js';
import { CopyLines, TupleShape } from './wal-row-text.js';
import { fromText } from './wal-values.js';
import { toJsonText } from '../../core/json.js';
import { keyChange, sameKey } from '../key-change.js';

/** The table the PostgreSQL sink updates in each of its transactions (when it exists): the WAL source drops those transactions. */
export const ORIGIN_MARKER_TABLE = 'cdc_sync.origin_marker';

export interface WalTransaction {
  endLsn: bigint;
  /** The top-level transaction id (32 bits, as pgoutput's Begin sends it). */
  xid: number;
  commitTime: Date;
  events: ChangeEvent[];
  rejected: RejectedChange[];
  /** The transaction wrote cdc_sync.origin_marker: cdc-sync's own write, to be dropped. */
  ownWrite: boolean;
}

interface Relation {
  qualified: string;
  columns: RelationColumn[];
  /** The stream's table it is (undefined: in the publication, not in this stream, or the origin marker). */
  table: { source: string; key: string[] } | undefined;
  /** The key of its changes: the configured one, else the replica identity's columns. */
  keyColumns: string[];
  /** Every column, null: rows start as a copy of it, so each column is set on a property the row has already. */
  template: Row;
  /** Its inserts become text rows (wal-row-text.ts): the sink writes the table's rows as text. */
  shape: TupleShape | undefined;
}

export interface AssemblerOptions {
  /** `schema.table` → configured source name and key columns (empty: the relation's replica identity key). */
  tables: Map<string, { source: string; key: string[] }>;
  truncate: 'apply' | 'dead-letter' | 'ignore';
  stream: string;
  /** A change of a published table this stream does not capture (a publication FOR ALL TABLES, or shared): skipped, but reported. */
  unknownTable?: (qualified: string) => void;
  /** Configured source tables whose inserts the sink takes as text rows (Source.textRows). */
  textTables?: ReadonlySet<string>;
}

/**
 * Turns the pgoutput message sequence into whole transactions of
 * ChangeEvents. Relation messages (sent before the first change of a table
 * and again after its schema changed) replace the column list.
 */
export class TransactionAssembler {
  private readonly relations = new Map<number, Relation>();
  private readonly lines = new CopyLines();
  private current: (WalTransaction & { position: string }) | null = null;

  constructor(private readonly options: AssemblerOptions) {}

  /** Inside a transaction (Begin seen, Commit not yet). */
  get open(): boolean {
    return this.current !== null;
  }

  /**
   * Feeds the pgoutput message at `offset` of `message`; returns the
   * transaction its Commit completes. Inserts of captured tables (most of a
   * backlog) are read straight into rows, or into text rows where the sink
   * takes them, as are updates that keep their key there; the rest go
   * through `decodePgOutput`.
   */
  receive(message: Buffer, offset: number): WalTransaction | null {
    const tx = this.current;
    const tag = message[offset];
    if (tx !== null && (tag === 0x49 /* I */ || tag === 0x55 /* U */)) {
      const relation = this.relations.get(message.readUInt32BE(offset + 1));
      const table = relation?.table;
      if (table && relation.shape) {
        // An insert, or an update that keeps its key (no old tuple).
        const row = relation.shape.newTuple(message, offset, this.lines);
        if (row) {
          tx.events.push(change(table.source, tag === 0x49 ? 'insert' : 'update', relation.shape.key, row, null, tx.commitTime));
          return null;
        }
      } else if (table && tag === 0x49) {
        const row = insertRow(message, offset, relation.columns, relation.template, fromText);
        if (row) {
          tx.events.push(change(table.source, 'insert', keyOf(relation.keyColumns, row), row, null, tx.commitTime));
          return null;
        }
      }
    }
    return this.push(decodePgOutput(message, offset));
  }

  /** Feeds one message; returns the transaction its Commit completes. */
  push(message: PgOutputMessage): WalTransaction | null {
    switch (message.tag) {
      case 'relation': {
        const qualified = `${message.schema}.${message.name}`;
        const table = qualified === ORIGIN_MARKER_TABLE ? undefined : this.options.tables.get(qualified);
        const keyColumns = table?.key.length ? table.key : message.columns.filter((c) => c.key).map((c) => c.name);
        this.relations.set(message.relationId, {
          qualified,
          columns: message.columns,
          table,
          keyColumns,
          template: Object.fromEntries(message.columns.map((c) => [c.name, null])),
          shape: table && this.options.textTables?.has(table.source) ? new TupleShape(message.columns, keyColumns) : undefined,
        });
        return null;
      }
      case 'begin':
        // The final LSN is the commit's start; the checkpoint is the end, known at Commit (events get it then).
        this.current = { endLsn: 0n, xid: message.xid, commitTime: message.commitTime, events: [], rejected: [], ownWrite: false, position: '' };
        return null;
      case 'commit': {
        const tx = this.current;
        this.current = null;
        if (!tx) return null;
        tx.endLsn = message.endLsn;
        const position = formatLsn(message.endLsn);
        for (const e of tx.events) e.position = position;
        for (const r of tx.rejected) r.position = position;
        return { endLsn: tx.endLsn, xid: tx.xid, commitTime: tx.commitTime, events: tx.events, rejected: tx.rejected, ownWrite: tx.ownWrite };
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
    const { table, keyColumns } = relation;
    if (!table) {
      this.options.unknownTable?.(relation.qualified);
      return;
    }
    const events = tx.events;
    if (message.tag === 'insert') {
      const row = toRow(relation, message.newTuple);
      events.push(change(table.source, 'insert', keyOf(keyColumns, row), row, null, tx.commitTime));
      return;
    }
    if (message.tag === 'delete') {
      const before = toRow(relation, message.oldTuple, message.oldKind === 'K');
      events.push(change(table.source, 'delete', keyOf(keyColumns, before), null, before, tx.commitTime));
      return;
    }
    // An unchanged TOAST value is missing from the new tuple: the sink leaves the target's value as it is.
    const row = toRow(relation, message.newTuple);
    const before = message.oldTuple ? toRow(relation, message.oldTuple, message.oldKind === 'K') : null;
    const update = change(table.source, 'update', keyOf(keyColumns, row), row, before, tx.commitTime);
    // An Update message carries an old tuple when the key may have changed. PostgreSQL, "Logical
    // Replication Message Formats", Update: 'K' "Identifies the following TupleData submessage as a
    // key. This field is optional and is only present if the update changed data in any of the
    // column(s) that are part of the REPLICA IDENTITY index"; 'O' (the old row) "is only present if
    // table in which the update happened has REPLICA IDENTITY set to FULL", with every update.
    // (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html)
    // Without one the key is unchanged; a configured key the 'K' tuple lacks cannot be compared: a plain update.
    if (!before || !keyColumns.every((c) => c in before)) {
      events.push(update);
      return;
    }
    const oldKey = keyOf(keyColumns, before);
    if (sameKey(oldKey, update.key)) {
      events.push(update);
      return;
    }
    // The key changed: the row moves, as a delete of the old key and an insert of the new one.
    // A new row has no target row to keep an unchanged TOAST value: the full old image (REPLICA
    // IDENTITY FULL, sent detoasted) gives it; the old key alone ('K') does not, which the dead letter says.
    const missing = relation.columns.filter((c) => !(c.name in row));
    if (message.oldKind === 'O') for (const c of missing) if (c.name in before) row[c.name] = before[c.name]!;
    const lost = missing.filter((c) => !(c.name in row)).map((c) => c.name);
    if (lost.length > 0) tx.rejected.push(toastLost(relation, table.source, update.key, lost, this.options.stream));
    const [moved, arrived] = keyChange(update, oldKey);
    events.push(moved, arrived);
  }

  private truncate(relationIds: number[], cascade: boolean): void {
    const tx = this.current;
    if (!tx || this.options.truncate === 'ignore') return;
    for (const id of relationIds) {
      const relation = this.relation(id);
      const table = relation.table;
      if (!table) continue;
      if (this.options.truncate === 'apply') {
        tx.events.push(change(table.source, 'truncate', {}, null, null, tx.commitTime));
        continue;
      }
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

/** The position is filled in at Commit; one object shape for every event keeps property access monomorphic. */
function change(table: string, op: Op, key: Row, row: Row | null, before: Row | null, commitTime: Date): ChangeEvent {
  return { table, op, key, row, before, position: '', commitTime };
}

function keyOf(columns: string[], row: Row): Row {
  const key: Row = {};
  for (const column of columns) key[column] = row[column] ?? null;
  return key;
}

/**
 * A key change whose row had TOAST values the update left as they were: under REPLICA IDENTITY
 * DEFAULT they are in neither tuple, so the row under its new key is written without them (NULL or
 * the column's default). The dead letter names the columns; the keys are in its payload.
 */
function toastLost(relation: Relation, source: string, key: Row, columns: string[], stream: string): RejectedChange {
  return {
    table: source,
    key,
    payload: toJsonText({ keyChange: relation.qualified, key, missing: columns }),
    error: new PermanentError(
      `a key change of ${relation.qualified} reached the sink without the unchanged TOAST value of ${columns.join(', ')}: ` +
        'under REPLICA IDENTITY DEFAULT the WAL does not hold it; copy the table again (cdc-sync snapshot --table) ' +
        'or fix the row by hand, then resolve this dead letter (ALTER TABLE … REPLICA IDENTITY FULL sends the value)',
      { reason: 'other', context: { stream, table: source } },
    ),
    position: '',
  };
}

/** Columns sent as "unchanged TOAST" are left out, so the sink never overwrites them; `keyOnly`: only key columns carry values. */
function toRow(relation: Relation, tuple: TupleColumn[], keyOnly = false): Row {
  const columns = relation.columns;
  if (!keyOnly && tuple.length === columns.length && !tuple.includes(undefined)) {
    // The common case, every column present: a copy of the template (one shape for all rows of the relation).
    const row: Row = { ...relation.template };
    for (let i = 0; i < columns.length; i += 1) {
      const value = tuple[i]!;
      if (value !== null) row[columns[i]!.name] = fromText(columns[i]!.typeOid, value);
    }
    return row;
  }
  const row: Row = {};
  for (let i = 0; i < columns.length; i += 1) {
    const value = tuple[i];
    if (value === undefined) continue;
    const column = columns[i]!;
    if (keyOnly && !column.key) continue;
    row[column.name] = value === null ? null : fromText(column.typeOid, value);
  }
  return row;
}
