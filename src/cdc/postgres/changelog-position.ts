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
 * Snapshots hold only for the server run that took them: after a crash,
 * PostgreSQL hands out again the transaction ids that never reached the WAL
 * on disk (those of transactions that aborted or were running), so a new
 * transaction can get an id a stored snapshot calls finished. The position
 * therefore names the server run (`server`, its start time), and the reader
 * takes those ids back out of its snapshots when the server has restarted
 * (`reissuedFrom`).
 *
 * Text form `done|upto|after|server`, snapshots in PostgreSQL's
 * `xmin:xmax:xip,…` form (positions stored before `server` existed have
 * three parts).
 */
export class ChangeLogPosition {
  constructor(
    readonly done: string | null,
    readonly upto: string | null,
    readonly after: bigint,
    readonly server: string | null = null,
  ) {}

  static readonly start = new ChangeLogPosition(null, null, 0n);

  static parse(text: string | null): ChangeLogPosition {
    if (text === null || text === '') return ChangeLogPosition.start;
    const parts = text.split('|');
    if ((parts.length !== 3 && parts.length !== 4) || !/^\d+$/.test(parts[2]!)) throw new Error(`not a change-log position: ${text}`);
    return new ChangeLogPosition(parts[0] || null, parts[1] || null, BigInt(parts[2]!), parts[3] || null);
  }

  toString(): string {
    return `${this.done ?? ''}|${this.upto ?? ''}|${this.after}${this.server ? `|${this.server}` : ''}`;
  }

  /** Inside the range (done, upto], after change `id`. */
  advancedTo(id: bigint): ChangeLogPosition {
    return new ChangeLogPosition(this.done, this.upto, id, this.server);
  }

  /** The range is read to its end: everything visible in `upto` is done. */
  completed(): ChangeLogPosition {
    return new ChangeLogPosition(this.upto ?? this.done, null, 0n, this.server);
  }

  withRange(upto: string): ChangeLogPosition {
    return new ChangeLogPosition(this.done, upto, this.after, this.server);
  }

  /**
   * The server run `server` hands out ids from `first` on, some of which the
   * snapshots may call finished (see above): no transaction from `first` on
   * counts as finished any more. Those of the old run never committed, so
   * nothing is read twice; those of the new run are read when they commit.
   */
  reissuedFrom(first: bigint, server: string): ChangeLogPosition {
    const clamp = (snapshot: string | null) => (snapshot === null ? null : snapshotBefore(snapshot, first));
    return new ChangeLogPosition(clamp(this.done), clamp(this.upto), this.after, server);
  }

  onServer(server: string): ChangeLogPosition {
    return new ChangeLogPosition(this.done, this.upto, this.after, server);
  }
}

/** `snapshot` with every transaction from `first` on not yet started. */
export function snapshotBefore(snapshot: string, first: bigint): string {
  const [xmin, xmax, xip = ''] = snapshot.split(':');
  if (BigInt(xmax!) <= first) return snapshot;
  const running = xip === '' ? [] : xip.split(',').filter((x) => BigInt(x) < first);
  const low = BigInt(xmin!) < first ? BigInt(xmin!) : first;
  return `${low}:${first}:${running.join(',')}`;
}
