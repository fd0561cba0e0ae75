/**
 * Where a change-log reader stands, in PgQ's terms: every change of a
 * transaction visible in `done` is applied; of the transactions visible in
 * `upto` but not in `done`, those with id ≤ `after` are applied.
 *
 * Ids alone cannot be a checkpoint: ids are taken at INSERT time, commits
 * happen later and in any order, so a reader at id 101 can still see id 100
 * commit after it. Snapshots (`pg_current_snapshot()`) say which
 * transactions had committed; between two snapshots the set of changes is
 * fixed and can be paged by id.
 *
 * Text form `done|upto|after`, snapshots in PostgreSQL's `xmin:xmax:xip,…` form.
 */
export class ChangeLogPosition {
  constructor(
    readonly done: string | null,
    readonly upto: string | null,
    readonly after: bigint,
  ) {}

  static readonly start = new ChangeLogPosition(null, null, 0n);

  static parse(text: string | null): ChangeLogPosition {
    if (text === null || text === '') return ChangeLogPosition.start;
    const parts = text.split('|');
    if (parts.length !== 3 || !/^\d+$/.test(parts[2]!)) throw new Error(`not a change-log position: ${text}`);
    return new ChangeLogPosition(parts[0] || null, parts[1] || null, BigInt(parts[2]!));
  }

  toString(): string {
    return `${this.done ?? ''}|${this.upto ?? ''}|${this.after}`;
  }

  /** Inside the range (done, upto], after change `id`. */
  advancedTo(id: bigint): ChangeLogPosition {
    return new ChangeLogPosition(this.done, this.upto, id);
  }

  /** The range is read to its end: everything visible in `upto` is done. */
  completed(): ChangeLogPosition {
    return new ChangeLogPosition(this.upto ?? this.done, null, 0n);
  }

  withRange(upto: string): ChangeLogPosition {
    return new ChangeLogPosition(this.done, upto, this.after);
  }
}
