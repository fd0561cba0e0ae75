import { Observable } from 'rxjs';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Source } from '../../src/cdc/source.js';
import type { ChangeEvent, SourceChunk } from '../../src/core/change-event.js';
import { PermanentError } from '../../src/core/errors.js';
import type { TargetTable } from '../../src/core/mapping.js';
import { streamSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { ApplyResult, DeadLetter, Sink, SinkBatch } from '../../src/sinks/sink.js';
import { Stream } from '../../src/streams/stream.js';
import { HOLD_LIMIT_MS, ParkedChanges } from '../../src/streams/parked-changes.js';
import type { FailedChange } from '../../src/streams/apply-batch.js';
import { ITEMS_TARGET } from '../support/items-target.js';

/**
 * A change held back for its parent (a source that cannot tell where its
 * transactions end, as the SQLite change log) while later batches are
 * applied, then cdc-sync restarts before the parent arrives. Found by the
 * convergence checker run with parallel histories: the restart read the
 * held change's batch and every later one again, so rows went back to
 * older values for a while and were written twice.
 */
const item = (id: number, name: string, position: number): ChangeEvent => ({
  table: 'public.items',
  op: 'insert',
  key: { id },
  row: { id, name, data: id === 7 || id === 10 ? new Uint8Array([0, 255]) : null, at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), big: 2n ** 60n },
  before: null,
  position: String(position),
  commitTime: new Date(Date.UTC(2024, 0, 1)),
});

// Batch 1: a child before its parent, and item 1's first value; batch 2: item 1's second value; batch 3: the parent.
const CHUNKS: SourceChunk[] = [
  { events: [item(10, 'child of 20', 1), item(7, 'binary', 2), item(1, 'v1', 3)], rejected: [], position: '3', caughtUp: false },
  { events: [item(1, 'v2', 4)], rejected: [], position: '4', caughtUp: false },
  { events: [item(20, 'parent', 5)], rejected: [], position: '5', caughtUp: true },
];

/** The chunks after `from`, one per demand, up to `available`. */
class ListSource implements Source {
  constructor(
    private readonly available: number,
    private readonly list: SourceChunk[] = CHUNKS,
  ) {}
  async open(): Promise<void> {}
  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return new Observable<SourceChunk>((subscriber) => {
      const pending = this.list.slice(0, this.available).filter((c) => Number(c.position) > Number(from ?? 0));
      const give = () => {
        const next = pending.shift();
        if (next) subscriber.next(next);
      };
      give();
      const subscription = demand.subscribe(give);
      return () => subscription.unsubscribe();
    });
  }
  wake(): void {}
  async close(): Promise<void> {}
}

/** Keeps rows in one transaction per batch; "child of N" needs row N (a deferred foreign key); records each row write. */
class ForeignKeySink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  readonly rows = new Map<number, Record<string, unknown>>();
  readonly writes: string[] = [];
  readonly deadLetters: DeadLetter[] = [];
  checkpoint: string | null = null;
  async open(): Promise<TargetTable[]> {
    return [{ ...ITEMS_TARGET, columns: [...ITEMS_TARGET.columns, { name: 'data', type: 'binary', generated: false }, { name: 'at', type: 'timestamp', generated: false }, { name: 'big', type: 'integer', generated: false }] }];
  }
  bind(): void {}
  async readCheckpoint(): Promise<string | null> {
    return this.checkpoint;
  }
  async apply(batch: SinkBatch): Promise<ApplyResult> {
    const rows = new Map(this.rows);
    const writes: string[] = [];
    for (const change of batch.changes) {
      const id = Number(change.key.id);
      const row = change.row ?? {};
      if (JSON.stringify(rows.get(id), replacer) === JSON.stringify(row, replacer)) continue;
      rows.set(id, row);
      writes.push(`${id}=${String(row.name)}`);
    }
    // Checked at commit, as a deferred foreign key is.
    for (const [id, row] of rows) {
      const parent = /^child of (\d+)$/.exec(String(row.name))?.[1];
      if (parent && !rows.has(Number(parent))) throw new PermanentError(`item ${id} misses its parent ${parent}`, { reason: 'missing-parent' });
    }
    for (const [id, row] of rows) this.rows.set(id, row);
    this.writes.push(...writes);
    this.deadLetters.push(...batch.deadLetters);
    if (batch.checkpoint) this.checkpoint = batch.checkpoint.position;
    return { written: writes.length };
  }
  async close(): Promise<void> {}
}

function replacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${value}n` : value instanceof Uint8Array ? [...value] : value;
}

/** A log reader that acknowledges what the sink committed (JetStream, a replication slot): its progress is the checkpoint's. */
class AcknowledgingSource extends ListSource {
  readonly acknowledged: string[] = [];
  async committed(position: string): Promise<void> {
    this.acknowledged.push(position);
  }
}

function startStream(sink: Sink, available: number, chunks: SourceChunk[] = CHUNKS, source: Source = new ListSource(available, chunks)) {
  const config = streamSchema.parse({
    name: 'held',
    source: { type: 'sqlite-changelog', url: 'sqlite:unused.db' },
    sink: { type: 'postgres', url: 'postgres://unused' },
    tables: [{ source: 'public.items', target: 'public.items' }],
    batch: { maxSize: 1, maxWaitMs: 0 },
  });
  const stream = new Stream({ config, path: 'streams[0]', source, sink, checkpoints: null, metrics: createMetrics(new Registry()), log: createLogger('silent') });
  return { stream, running: stream.run() };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 400 && !check(); i += 1) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
};

describe('a change held back for a missing parent', () => {
  it('is kept across a restart with its values intact, and the batches applied since are not applied again', async () => {
    const sink = new ForeignKeySink();
    const first = startStream(sink, 2);
    await until(() => sink.writes.includes('1=v2'));
    first.stream.stop();
    await first.running;
    expect(sink.rows.has(10)).toBe(false);

    // The parent arrives after the restart.
    const second = startStream(sink, 3);
    await until(() => sink.rows.has(10));
    second.stream.stop();
    await second.running;

    // Item 1 went v1 → v2 once; it never went back to v1.
    expect(sink.writes.filter((w) => w.startsWith('1='))).toEqual(['1=v1', '1=v2']);
    expect(sink.writes.filter((w) => w.startsWith('7='))).toEqual(['7=binary']);
    // The held child's values came back from the checkpoint as the stream maps them (row 7 was never held).
    expect(sink.rows.get(10)).toEqual({ ...sink.rows.get(7), id: 10, name: 'child of 20' });
    expect(sink.rows.get(10)!.data).toBeInstanceOf(Uint8Array);
    expect(sink.deadLetters).toEqual([]);
    expect(sink.checkpoint).toBe('5');
  });

  it('waits while the source has a read scheduled that may bring the parent, though it has nothing more right now', async () => {
    // A Realtime feed back from an outage: the child came live, its parent was lost with the outage, and only the
    // catch-up after the margin reads it. Nothing else is buffered meanwhile (caught up), but that read is still to come.
    const chunks: SourceChunk[] = [
      { events: [item(10, 'child of 20', 1)], rejected: [], position: '1', caughtUp: true, readsPending: true },
      { events: [item(20, 'parent', 2)], rejected: [], position: '2', caughtUp: true },
    ];
    const sink = new ForeignKeySink();
    const run = startStream(sink, 2, chunks);
    await until(() => sink.rows.has(10));
    run.stream.stop();
    await run.running;
    expect(sink.deadLetters).toEqual([]);
    expect(sink.checkpoint).toBe('2');
  });

  it('is held also by a source that acknowledges committed positions (a NATS consumer: the half of a published batch read first)', async () => {
    // Found by the convergence checker through NATS: the first read ended inside a published batch, and its
    // children went to the dead letter at once because the source acknowledges, though its checkpoint is the sink's.
    const chunks: SourceChunk[] = [
      { events: [item(10, 'child of 20', 1)], rejected: [], position: '1', caughtUp: true, readsPending: true },
      { events: [item(20, 'parent', 2)], rejected: [], position: '2', caughtUp: true },
    ];
    const sink = new ForeignKeySink();
    const source = new AcknowledgingSource(2, chunks);
    const run = startStream(sink, 2, chunks, source);
    await until(() => sink.rows.has(10));
    run.stream.stop();
    await run.running;
    expect(sink.deadLetters).toEqual([]);
    expect(source.acknowledged).toEqual(['1', '2']);
  });
});

describe('ParkedChanges.settle', () => {
  const missing = (id: number): FailedChange => ({ event: item(id, `child ${id}`, id), error: new PermanentError('no parent', { reason: 'missing-parent' }), reason: 'missing-parent' });
  const invalid: FailedChange = { event: item(3, 'bad', 3), error: new PermanentError('bad value', { reason: 'invalid-data' }), reason: 'invalid-data' };

  it('holds a missing parent while the source has more to read, however long, and letters any other failure', () => {
    let now = 0;
    const parked = new ParkedChanges(() => now);
    expect(parked.settle([missing(10), invalid], { caughtUp: false })).toEqual([invalid]);
    now = HOLD_LIMIT_MS * 10;
    expect(parked.settle([missing(10)], { caughtUp: false })).toEqual([]);
    expect(parked.size).toBe(1);
  });

  it('letters a missing parent at once when the source is caught up with nothing pending', () => {
    const parked = new ParkedChanges(() => 0);
    const child = missing(10);
    expect(parked.settle([child], { caughtUp: true })).toEqual([child]);
    expect(parked.size).toBe(0);
  });

  it('holds a missing parent that a pending read may bring (another partition) up to the limit after it was first held, then letters it', () => {
    let now = 1_000;
    const parked = new ParkedChanges(() => now);
    const first = missing(10);
    expect(parked.settle([first], { caughtUp: true, readsPending: true })).toEqual([]);
    expect(parked.newlyHeld).toEqual(new Map([['public.items', 1]]));
    now += HOLD_LIMIT_MS - 1;
    // Held again batch after batch: the wait counts from the first time, not from the last batch.
    expect(parked.settle([first, missing(11)], { caughtUp: true, readsPending: true })).toEqual([]);
    // Only the change held for the first time counts as newly held (the log line says it once).
    expect(parked.newlyHeld).toEqual(new Map([['public.items', 1]]));
    expect(parked.size).toBe(2);
    now += 1;
    expect(parked.settle([first, missing(11)], { caughtUp: true, readsPending: true })).toEqual([first]);
    expect(parked.events().map((e) => e.key)).toEqual([{ id: 11 }]);
    // Applied (its parent came): the wait of a later hold of the key starts afresh.
    parked.settle([], { caughtUp: true, readsPending: true });
    expect(parked.settle([first], { caughtUp: true, readsPending: true })).toEqual([]);
  });
});
