import type { ChangeEvent, RejectedChange } from '../core/change-event.js';
import { ConfigError } from '../core/errors.js';
import type { StreamContext } from '../streams/context.js';
import { changeLogEvent, splitRejected, type ChangeLogTable } from './change-log-row.js';

/**
 * A copy of existing rows in progress: `tables` still to copy, the first one
 * being copied now, in keyset chunks after `key` (the last copied key, as a
 * JSON object text; null: from the first row). `total` is that table's row
 * count when its copy began, for the progress gauge.
 */
export interface CopyProgress {
  tables: string[];
  key: string | null;
  copied: number;
  total: number | null;
  /** `cdc-sync snapshot --where`: only the rows of the first table this condition holds for (copy-filter.ts). */
  where?: string;
}

/**
 * A change-log position with a copy in progress: `{"copy":{…},"log":"…"}`.
 * Without a copy the position is the log's own text, as it always was, so
 * checkpoints stored by earlier versions read unchanged.
 */
export function withCopy(log: string, copy: CopyProgress | null): string {
  return copy ? JSON.stringify({ copy, log }) : log;
}

export function splitCopy(text: string | null): { log: string | null; copy: CopyProgress | null } {
  if (text === null || !text.startsWith('{"copy"')) return { log: text, copy: null };
  const o = JSON.parse(text) as { copy: CopyProgress; log: string };
  return { log: o.log === '' ? null : o.log, copy: o.copy };
}

/** One chunk of the table being copied, read at the same instant as the log position it is applied after. */
export interface CopyChunk {
  /** Row images in the change log's own JSON form, in key order. */
  rows: string[];
  /** The last row's key (JSON object text), to continue after. */
  lastKey: string | null;
}

/**
 * Copies the tables of a change-log source while it streams. Each chunk is
 * read in the same snapshot as the log position it is applied after, so it
 * holds exactly the rows as they were at that position: applied right after
 * the log's changes up to there, it never takes a row back to an older state
 * (DBLog's watermarks, with the window closed to one snapshot). A copied row
 * carries the Unix epoch as its change time: in a two-way pair it loses to
 * any change the other side logged for its key, so a copy never overwrites
 * an edit (and after a logged change of its key in the same batch it takes
 * that change's time: see coalesce).
 */
export class TableCopy {
  private order: string[] | undefined;
  /** Tables still to copy at the last checkpoint, and the rows read of each, for the log. */
  private copying: string[] = [];
  private readonly rowsRead = new Map<string, number>();

  /** Tables of the configuration, in its order (the apply order, once given, comes first). */
  private readonly configured: string[];
  private readonly snapshot: 'initial' | 'never';
  /** Rows per chunk: `snapshotChunkSize`, else the source's readLimit. */
  readonly chunkSize: number;

  /**
   * `tables`: the source's map from the change log's table names, filled
   * when it opens (a checkpoint can be rewritten for a copy without opening
   * the source).
   */
  constructor(
    options: { tables: { source: string }[]; snapshot?: 'initial' | 'never'; chunkSize?: number; readLimit: number },
    private readonly tables: Map<string, ChangeLogTable>,
  ) {
    this.configured = options.tables.map((t) => t.source);
    this.snapshot = options.snapshot ?? 'initial';
    this.chunkSize = options.chunkSize ?? options.readLimit;
  }

  /**
   * The position that copies `tables` (all, in the apply order, when empty)
   * again from the log position of `position` on (`cdc-sync snapshot`),
   * keeping the rest of a copy already going.
   */
  request(position: string | null, tables: string[], where?: string): string {
    const all = this.all;
    const unknown = tables.filter((t) => !all.includes(t));
    if (unknown.length > 0) throw new ConfigError(`--table: not a table of this stream: ${unknown.join(', ')} (have: ${all.join(', ')})`);
    const { log, copy } = splitCopy(position);
    const wanted = tables.length === 0 ? all : all.filter((t) => tables.includes(t));
    const going = copy?.tables ?? [];
    // A table being copied now starts again from its first row; one still waiting keeps its place.
    const next = [...wanted, ...going.filter((t) => !wanted.includes(t))];
    return withCopy(log ?? '', { tables: next, key: null, copied: 0, total: null, ...(where === undefined ? {} : { where }) });
  }

  /** The stream's apply order (parents first): tables are copied in it. */
  setOrder(tables: string[]): void {
    this.order = tables;
  }

  get all(): string[] {
    const configured = this.configured;
    return this.order ? [...this.order.filter((t) => configured.includes(t)), ...configured.filter((t) => !this.order!.includes(t))] : configured;
  }

  /** What a stream starting at `from` copies: every table when it has no checkpoint (`snapshot: initial`). */
  start(from: string | null): { log: string | null; copy: CopyProgress | null } {
    if (from === null && this.snapshot === 'initial' && this.configured.length > 0) {
      return { log: null, copy: { tables: this.all, key: null, copied: 0, total: null } };
    }
    return splitCopy(from);
  }

  /** The table (as the change log names it) and key columns of the table the copy is on. */
  current(copy: CopyProgress): { name: string; source: string; key: string[] } {
    const source = copy.tables[0]!;
    for (const [name, table] of this.tables) if (table.source === source) return { name, ...table };
    throw new ConfigError(`the checkpoint copies table ${source}, which the stream no longer has; run \`cdc-sync snapshot\` again`);
  }

  /**
   * The chunk's events, and where the copy stands after it (null: done). A
   * chunk shorter than `chunkSize` ends its table.
   */
  advance(context: StreamContext, copy: CopyProgress, chunk: CopyChunk, position: (copy: CopyProgress | null) => string): { events: ChangeEvent[]; rejected: RejectedChange[]; copy: CopyProgress | null } {
    const table = this.current(copy);
    const copied = copy.copied + chunk.rows.length;
    const next: CopyProgress | null =
      chunk.rows.length < this.chunkSize
        ? copy.tables.length > 1
          ? { tables: copy.tables.slice(1), key: null, copied: 0, total: null }
          : null
        : { ...copy, key: chunk.lastKey, copied };
    const at = position(next);
    const { events, rejected } = splitRejected(
      chunk.rows.map((row_data, i) => changeLogEvent({ id: `copy ${table.source} ${copy.copied + i + 1}`, op: 'I', row_data, old_data: null, origin: null }, table, at, COPY_TIME, context.stream)),
    );
    for (const e of events) e.copied = true;
    const labels = { stream: context.stream, direction: context.direction, table: table.source };
    context.metrics.snapshotRows.inc(labels, chunk.rows.length);
    const done = next === null || next.tables[0] !== copy.tables[0];
    context.metrics.snapshotProgress.set(labels, done ? 1 : copy.total ? Math.min(1, copied / copy.total) : 0);
    this.rowsRead.set(table.source, copied);
    return { events, rejected, copy: next };
  }

  /**
   * `position` is the stream's checkpoint: a table the copy has left behind
   * is finished only now that its last chunk is applied (a kill before this
   * copies its last chunk again).
   */
  checkpointed(context: StreamContext, position: string): void {
    const now = splitCopy(position).copy?.tables ?? [];
    for (const table of this.copying) {
      if (now.includes(table)) continue;
      context.log.info({ table, rows: this.rowsRead.get(table) ?? null }, 'copy of existing rows finished');
    }
    this.copying = now;
  }
}

/** A copied row's change time: older than any logged change (see TableCopy). */
export const COPY_TIME = new Date(0);
