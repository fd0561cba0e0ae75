import { append } from '../../core/arrays.js';
import { keyString, type ChangeEvent, type Row } from '../../core/change-event.js';
import { rowText } from '../../core/row-text.js';

/**
 * Keeps the last change per key (source order decides) and puts them in an
 * order a set-based sink can apply: deletes from child tables up, then
 * upserts from parent tables down. `tableOrder` lists tables parents first.
 * Upserts are idempotent, so the last image of a key is all the sink needs:
 * update+delete → delete. Whether the row is new is the first change's
 * word: insert+update → insert (of the last image), delete+insert or
 * update+insert → update, so a sink may write new rows the cheaper way
 * (COPY) and upsert the others. A column the last change's row lacks (an
 * unchanged TOAST value, which pgoutput does not send) keeps the value of
 * the key's earlier image in the batch.
 * Tables a TRUNCATE emptied come first (children first), without the
 * changes that preceded the TRUNCATE.
 * A copied row (`copied`, see TableCopy) after a logged change of its key
 * holds that change's result, so it takes that change's time: with its own
 * (the epoch) it would lose to an older change on the target in a two-way
 * pair, and the logged change it replaced would be lost there.
 */
export function coalesce(events: ChangeEvent[], tableOrder: string[]): ChangeEvent[] {
  // Per table, the index of the newest change of each key: found by the key value itself when the key
  // is one text or number column (no string built per change), else by keyString. Walking the events
  // in order and keeping the newest of each key gives the order of their newest changes.
  const newest = new Uint8Array(events.length);
  // The index of the key's first change in the batch, where an earlier one exists.
  const first = new Int32Array(events.length).fill(-1);
  const tables = new Map<string, { texts: TextKeys; values: Map<number, number>; strings: Map<string, number> }>();
  // A TRUNCATE wipes the table: its earlier changes in the batch are dropped, and it is applied before the later ones.
  const truncates = new Map<string, number>();
  // Per copied change that follows a logged one of its key: the newest logged change's time (rare: no array otherwise).
  let loggedTime: Map<number, Date> | undefined;
  // Per change whose row lacks columns of its key's earlier image in the batch: the row with them (rare).
  let filled: Map<number, Row> | undefined;
  for (let i = 0; i < events.length; i += 1) {
    const event = events[i]!;
    let ids = tables.get(event.table);
    if (event.op === 'truncate') {
      for (const earlier of [...(ids?.texts.indexes() ?? []), ...(ids?.values.values() ?? []), ...(ids?.strings.values() ?? [])]) newest[earlier] = 0;
      tables.delete(event.table);
      const previous = truncates.get(event.table);
      if (previous !== undefined) newest[previous] = 0;
      truncates.set(event.table, i);
      newest[i] = 1;
      continue;
    }
    if (!ids) tables.set(event.table, (ids = { texts: new TextKeys(events.length), values: new Map(), strings: new Map() }));
    const value = singleValue(event.key);
    let previous: number | undefined;
    if (typeof value === 'string') {
      previous = ids.texts.put(value, i);
    } else if (value !== undefined) {
      previous = ids.values.get(value);
      ids.values.set(value, i);
    } else {
      const text = keyString(event.key);
      previous = ids.strings.get(text);
      ids.strings.set(text, i);
    }
    if (previous !== undefined) {
      newest[previous] = 0;
      first[i] = first[previous] === -1 ? previous : first[previous]!;
      // A row without a column its key's earlier image has (pgoutput leaves an unchanged TOAST value out): the
      // earlier value still holds, and a row that is new to the target must not lose it. Text rows are whole.
      if (event.row && !rowText(event.row)) {
        const earlier = filled?.get(previous) ?? events[previous]!.row;
        if (earlier && lacksColumnOf(event.row, earlier)) (filled ??= new Map()).set(i, { ...earlier, ...event.row });
      }
      if (event.copied) {
        const time = events[previous]!.copied ? loggedTime?.get(previous) : events[previous]!.commitTime;
        if (time) (loggedTime ??= new Map()).set(i, time);
      }
    }
    newest[i] = 1;
  }
  // One bucket per table rank (unknown tables last): a stable order without sorting.
  const rank = new Map(tableOrder.map((t, i) => [t, i]));
  const buckets = () => Array.from({ length: tableOrder.length + 1 }, (): ChangeEvent[] => []);
  const [emptied, deletes, upserts] = [buckets(), buckets(), buckets()];
  for (let i = 0; i < events.length; i += 1) {
    if (newest[i] === 0) continue;
    let e = first[i] === -1 ? events[i]! : withFirstWord(events[i]!, events[first[i]!]!.op);
    const time = loggedTime?.get(i);
    if (time) e = { ...e, commitTime: time };
    const row = filled?.get(i);
    if (row) e = { ...e, row };
    (e.op === 'truncate' ? emptied : e.op === 'delete' ? deletes : upserts)[rank.get(e.table) ?? tableOrder.length]!.push(e);
  }
  const ordered: ChangeEvent[] = [];
  for (const bucket of [...emptied.reverse(), ...deletes.reverse(), ...upserts]) append(ordered, bucket);
  return ordered;
}

/** The newest change of a key, its op saying whether the row is new (the first change inserted it) or existed. */
function withFirstWord(newest: ChangeEvent, firstOp: ChangeEvent['op']): ChangeEvent {
  if (newest.op === 'delete' || newest.op === 'truncate') return newest;
  const op = firstOp === 'insert' ? 'insert' : 'update';
  return op === newest.op ? newest : { ...newest, op };
}

function lacksColumnOf(row: Row, earlier: Row): boolean {
  for (const column in earlier) if (!(column in row)) return true;
  return false;
}

/** The key's value when it is one column of text or number; undefined otherwise. */
function singleValue(key: ChangeEvent['key']): string | number | undefined {
  let only: unknown;
  let count = 0;
  for (const column in key) {
    only = key[column];
    count += 1;
  }
  return count === 1 && (typeof only === 'string' || typeof only === 'number') ? only : undefined;
}

/**
 * The newest change per key of one text column, for one table of a batch: an
 * open-addressing table of change indexes (linear probing, FNV-1a over the
 * UTF-16 units). A Map did the same at several times the cost in a backlog's
 * batches of thousands of new keys: it grew its table again and again, and
 * that garbage was a sixth of what the WAL source's drain allocated.
 */
class TextKeys {
  private slots: Int32Array;
  /** The key of each change put, by its index. */
  private readonly keys: string[];
  private count = 0;

  constructor(changes: number) {
    this.keys = new Array<string>(changes);
    this.slots = new Int32Array(TextKeys.sizeFor(4));
  }

  /** Puts change `index` as the newest of `key`; returns the index of the key's change before it, if any. */
  put(key: string, index: number): number | undefined {
    const slots = this.slots;
    const mask = slots.length - 1;
    for (let at = hash(key) & mask; ; at = (at + 1) & mask) {
      const held = slots[at]!;
      if (held === 0) {
        slots[at] = index + 1;
        this.keys[index] = key;
        this.count += 1;
        if (this.count * 2 > slots.length) this.grow();
        return undefined;
      }
      if (this.keys[held - 1] === key) {
        slots[at] = index + 1;
        this.keys[index] = key;
        return held - 1;
      }
    }
  }

  /** The indexes of the newest change of each key. */
  indexes(): number[] {
    const found: number[] = [];
    for (const held of this.slots) if (held !== 0) found.push(held - 1);
    return found;
  }

  private grow(): void {
    const old = this.slots;
    const slots = new Int32Array(TextKeys.sizeFor(this.count * 2));
    const mask = slots.length - 1;
    for (const held of old) {
      if (held === 0) continue;
      let at = hash(this.keys[held - 1]!) & mask;
      while (slots[at] !== 0) at = (at + 1) & mask;
      slots[at] = held;
    }
    this.slots = slots;
  }

  /** A power of two at least twice `keys`, at least 16. */
  private static sizeFor(keys: number): number {
    let size = 16;
    while (size < keys * 2) size *= 2;
    return size;
  }
}

function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
