import { keyString, type ChangeEvent, type Row } from '../../core/change-event.js';
import type { StreamContext } from '../../streams/context.js';
import { countCaptured } from '../count-captured.js';
import { COPY_TIME } from '../table-copy.js';
import { parseLsn } from './wal-lsn.js';
import type { WalCopy } from './wal-position.js';
import { fromText } from './wal-values.js';

/** A captured table as the WAL source knows it. */
export interface WalTable {
  source: string;
  key: string[];
  columns: string[];
  types: number[];
}

/** What the copy reads through: one chunk and its watermark in one statement (walCopyChunkSql), and a row estimate. */
export interface WalCopyReader {
  chunk(table: string, after: Row | null, limit: number, where: string | undefined): Promise<{ marker: string; snapshot: string; rows: (string | null)[][] }>;
  estimate(table: string): Promise<number | null>;
}

/** A copied chunk ready to go down the stream, and where the copy stands after it. */
export interface WalCopyItem {
  events: ChangeEvent[];
  after: WalCopy | null;
}

interface Window {
  table: WalTable;
  events: ChangeEvent[];
  /** The watermark: the end LSN of the chunk statement's logical message. */
  marker: bigint;
  /** Which transactions the chunk saw. */
  visible: (xid: number) => boolean;
  /** The copy after this chunk. */
  next: WalCopy | null;
}

/**
 * A postgres-wal copy that runs while the slot streams, after Netflix's
 * DBLog. Each chunk is read in one statement that also writes a logical
 * message (pg_logical_emit_message) after the statement's snapshot was
 * taken; the message's LSN is the chunk's watermark. Every transaction
 * visible in the chunk committed before it, so by the time the stream passes
 * the watermark it has delivered all of them. Transactions decoded between
 * the read's start and the watermark may be newer than the chunk: the chunk
 * drops the rows of every key they touched (their changes carry those rows'
 * newer state) and goes down the stream right there, so no copied row ever
 * takes a key back to an older state. Nothing is written to a table (a
 * login without write grants copies too); the message needs a primary.
 * A copied row carries the Unix epoch as its change time (COPY_TIME), as the
 * change-log copies do: it loses to any change of its key on the other side.
 */
export class WalCopier {
  /** The copy as of the last chunk queued (null: none running). */
  private queued: WalCopy | null = null;
  /** The copy as of the last chunk delivered: where a reconnect starts again. */
  private delivered: WalCopy | null = null;
  private reading = false;
  private window: Window | null = null;
  /**
   * The transactions decoded since the running read began: their id and
   * their changes of the table being copied, as key text and (for an update
   * without an unchanged TOAST value) the values it carries. Only that, not
   * the events: a window stays open while the stream works through a
   * backlog, and must not keep all of it in memory.
   */
  private touched: { table: WalTable; changes: { xid: number; key: string; partial: Row | null }[] } | null = null;
  /** Bumped by reset: a read begun before it is dropped. */
  private generation = 0;
  private readonly copiedOf = new Map<string, { rows: number; superseded: number; total: number | null }>();

  constructor(
    private readonly context: StreamContext,
    private readonly options: {
      table: (source: string) => WalTable;
      reader: WalCopyReader;
      /** Rows per chunk. */
      limit: number;
      /** Everything up to here was decoded from the stream (or passed over). */
      sentThrough: () => bigint;
      push: (item: WalCopyItem) => void;
      fail: (error: unknown) => void;
    },
  ) {}

  /** Starts (or resumes) a copy at a stream's start. */
  start(copy: WalCopy | null): void {
    this.queued = copy;
    this.delivered = copy;
    this.stop();
  }

  get active(): boolean {
    return this.queued !== null || this.window !== null;
  }

  /** The copy as of the item delivered last (a transaction delivered after it carries the same). */
  get current(): WalCopy | null {
    return this.delivered;
  }

  /** The stream handed `after` on with a chunk. */
  deliveredChunk(after: WalCopy | null): void {
    this.delivered = after;
  }

  /**
   * The replication connection starts again: what was queued and not
   * delivered is read again from the slot. A chunk among it is read again
   * too; a read or window still open goes on (the transactions it must
   * weigh come again).
   */
  reset(): void {
    if (this.queued !== this.delivered) this.stop();
    this.queued = this.delivered;
  }

  /** Drops the read in flight and the open window. */
  stop(): void {
    this.generation += 1;
    this.reading = false;
    this.window = null;
    this.touched = null;
  }

  /**
   * A transaction was decoded (before it is queued). One ending past the
   * watermark closes the window first; one inside it supersedes the chunk's
   * rows of its keys.
   */
  seen(tx: { endLsn: bigint; xid: number; events: ChangeEvent[] }): void {
    if (this.window && tx.endLsn > this.window.marker) this.close();
    const touched = this.touched;
    if (!touched) return;
    for (const change of tx.events) {
      if (change.table !== touched.table.source) continue;
      const partial = change.op === 'update' && touched.table.columns.some((c) => !(c in change.row!));
      touched.changes.push({ xid: tx.xid, key: keyString(change.key), partial: partial ? change.row : null });
    }
  }

  /** The server has sent everything up to `lsn` (a keepalive, or a skipped transaction). */
  passed(lsn: bigint): void {
    if (this.window && lsn >= this.window.marker) this.close();
  }

  /** Reads the next chunk when one is due: a copy runs, no read or window is open, and the queue has room. */
  readNext(queued: number): void {
    if (!this.queued || this.reading || this.window || queued >= this.options.limit) return;
    const copy = this.queued;
    const table = this.options.table(copy.tables[0]!);
    const generation = this.generation;
    this.reading = true;
    this.touched = { table, changes: [] };
    void this.read(table, copy).then(
      (window) => {
        if (generation !== this.generation) return;
        this.reading = false;
        this.window = window;
        // The stream may be past the watermark already; then the chunk goes now.
        this.passed(this.options.sentThrough());
      },
      (error: unknown) => {
        if (generation === this.generation) this.options.fail(error);
      },
    );
  }

  private async read(table: WalTable, copy: WalCopy): Promise<Window> {
    const labels = { stream: this.context.stream, direction: this.context.direction, table: table.source };
    if (copy.after === null || !this.copiedOf.has(table.source)) {
      this.copiedOf.set(table.source, { rows: 0, superseded: 0, total: await this.options.reader.estimate(table.source) });
    }
    const { marker, snapshot, rows } = await this.options.reader.chunk(table.source, copy.after, this.options.limit, copy.where);
    const events: ChangeEvent[] = [];
    let last: Row | null = null;
    for (const values of rows) {
      // Decoded as the stream decodes a change (fromText by type OID): the same key and values either way.
      const row: Row = {};
      for (let i = 0; i < table.columns.length; i += 1) {
        const text = values[i];
        row[table.columns[i]!] = text === null || text === undefined ? null : fromText(table.types[i]!, text);
      }
      last = {};
      for (const k of table.key) last[k] = row[k] ?? null;
      events.push({ table: table.source, op: 'insert', key: last, row, before: null, position: '', commitTime: COPY_TIME, copied: true });
    }
    const rest = copy.tables.slice(1);
    const next: WalCopy | null = rows.length < this.options.limit ? (rest.length > 0 ? { tables: rest, after: null } : null) : { ...copy, after: last };
    const stats = this.copiedOf.get(table.source)!;
    stats.rows += rows.length;
    this.context.metrics.snapshotRows.inc(labels, rows.length);
    const done = next === null || next.tables[0] !== table.source;
    this.context.metrics.snapshotProgress.set(labels, done ? 1 : stats.total ? Math.min(0.99, stats.rows / stats.total) : 0);
    return { table, events, marker: parseLsn(marker), visible: visibleIn(snapshot), next };
  }

  /**
   * The chunk goes down the stream here, after every transaction it saw.
   * Of the transactions it did not see, each change of one of its keys
   * supersedes that row: it went down the stream before and carries a newer
   * state. An update without an unchanged TOAST value (REPLICA IDENTITY
   * DEFAULT) does not carry the whole row: its values go into the copied
   * row instead, which then holds exactly the row after that update.
   */
  private close(): void {
    const window = this.window!;
    // Only the changes of transactions the chunk did not see count.
    const unseen = (this.touched?.changes ?? []).filter(({ xid }) => !window.visible(xid));
    this.window = null;
    this.touched = null;
    const rows = unseen.length === 0 ? null : new Map(window.events.map((e) => [keyString(e.key), e]));
    for (const { key, partial } of rows ? unseen : []) {
      const copied = rows!.get(key);
      if (!copied) continue;
      if (partial) copied.row = { ...copied.row, ...partial };
      else rows!.delete(key);
    }
    const events = rows ? [...rows.values()] : window.events;
    const stats = this.copiedOf.get(window.table.source)!;
    stats.superseded += window.events.length - events.length;
    if (window.next?.tables[0] !== window.table.source) {
      this.context.log.info({ table: window.table.source, rows: stats.rows, superseded: stats.superseded }, 'table copied');
      this.copiedOf.delete(window.table.source);
    }
    this.queued = window.next;
    countCaptured(this.context, events);
    this.options.push({ events, after: window.next });
  }
}

/**
 * Whether a committed transaction's effects are in a snapshot
 * (`xmin:xmax:xip,…`, 64-bit ids) given its 32-bit id from pgoutput:
 * those that ended before xmin are, those from xmax on or still running
 * then are not (compared modulo 2^32, as PostgreSQL's TransactionIdPrecedes).
 */
export function visibleIn(snapshot: string): (xid: number) => boolean {
  const [xmin, xmax, xip = ''] = snapshot.split(':');
  const low = Number(BigInt(xmin!) & 0xffffffffn);
  const high = Number(BigInt(xmax!) & 0xffffffffn);
  const running = new Set(xip === '' ? [] : xip.split(',').map((x) => Number(BigInt(x) & 0xffffffffn)));
  const precedes = (a: number, b: number) => ((a - b) | 0) < 0;
  return (xid) => precedes(xid, low) || (precedes(xid, high) && !running.has(xid));
}
