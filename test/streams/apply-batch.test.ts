import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../../src/core/change-event.js';
import type { TableConfig, TableMapping, TargetTable } from '../../src/core/mapping.js';
import { ConfigError, PermanentError, TransientError } from '../../src/core/errors.js';
import type { ApplyResult, DeadLetter, Sink, SinkBatch } from '../../src/sinks/sink.js';
import type { StreamContext } from '../../src/streams/context.js';
import { applyBatch } from '../../src/streams/apply-batch.js';
import type { RetryPolicy } from '../../src/streams/retry.js';

const policy: RetryPolicy = { attempts: 10, minDelayMs: 1, maxDelayMs: 5 };
const commitTime = new Date('2024-01-01T00:00:00Z');

function change(id: number): ChangeEvent {
  return { table: 'public.t', op: 'insert', key: { id }, row: { id, name: `row ${id}` }, position: String(id), commitTime };
}

function changes(...ids: number[]): ChangeEvent[] {
  return ids.map(change);
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const ids = (events: ChangeEvent[]) => events.map((e) => e.key.id);

interface Call {
  batch: SinkBatch;
  ok: boolean;
}

/**
 * A sink in memory. `fail` decides per call: return an error to throw it
 * (the part is rolled back), or undefined to commit the part.
 */
class FakeSink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  readonly calls: Call[] = [];
  readonly rows = new Map<string, Row | null>();
  readonly deadLetters: DeadLetter[] = [];
  readonly checkpoints: string[] = [];

  constructor(private readonly fail: (batch: SinkBatch, call: number) => Error | undefined = () => undefined) {}

  async open(_context: StreamContext, _tables: TableConfig[]): Promise<TargetTable[]> {
    return [];
  }

  bind(_mappings: TableMapping[]): void {}

  async readCheckpoint(_stream: string): Promise<string | null> {
    return this.checkpoints.at(-1) ?? null;
  }

  async apply(batch: SinkBatch): Promise<ApplyResult> {
    // Copy: the caller may reuse arrays.
    const copy: SinkBatch = { ...batch, changes: [...batch.changes], deadLetters: [...batch.deadLetters] };
    const error = this.fail(copy, this.calls.length + 1);
    this.calls.push({ batch: copy, ok: !error });
    if (error) throw error;
    for (const c of copy.changes) this.rows.set(JSON.stringify(c.key), c.row);
    this.deadLetters.push(...copy.deadLetters);
    if (copy.checkpoint) this.checkpoints.push(copy.checkpoint.position);
    return { written: copy.changes.length };
  }

  async close(): Promise<void> {}

  /** Changes of the committed calls, in commit order. */
  committedChanges(): ChangeEvent[] {
    return this.calls.filter((c) => c.ok).flatMap((c) => c.batch.changes);
  }
}

/** Throws PermanentError whenever the part holds one of the poison keys. */
function poison(...bad: number[]) {
  return (batch: SinkBatch) =>
    batch.changes.some((c) => bad.includes(c.key.id as number))
      ? new PermanentError('violates check constraint', { reason: 'constraint', context: { table: 'public.t' } })
      : undefined;
}

const checkpoint = { stream: 's1', position: '20' };

describe('applyBatch', () => {
  it('applies a batch whole, in one call, with its dead letters and checkpoint', async () => {
    const sink = new FakeSink();
    const letter: DeadLetter = { stream: 's1', table: 'public.t', key: null, payload: '{', error: 'bad json', reason: 'malformed', position: '3' };
    const batch: SinkBatch = { changes: changes(1, 2, 3), deadLetters: [letter], checkpoint };
    const outcome = await applyBatch(sink, batch, 's1', policy, {});
    expect(sink.calls).toHaveLength(1);
    expect(sink.calls[0]!.batch).toEqual(batch);
    expect(outcome).toEqual({ applied: batch.changes, failed: [], written: 3, conflicts: [], superseded: 0 });
    expect(sink.deadLetters).toEqual([letter]);
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('retries a transient error and then succeeds', async () => {
    const sink = new FakeSink((_batch, call) => (call <= 2 ? new TransientError('connection reset') : undefined));
    const retries: number[] = [];
    const outcome = await applyBatch(sink, { changes: changes(1, 2), deadLetters: [], checkpoint }, 's1', policy, {
      onRetry: (_error, attempt) => retries.push(attempt),
    });
    expect(sink.calls.map((c) => c.ok)).toEqual([false, false, true]);
    expect(retries).toEqual([1, 2]);
    expect(ids(outcome.applied)).toEqual([1, 2]);
    expect(outcome.failed).toEqual([]);
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('isolates a poison change: all others applied, exactly it dead-lettered, checkpoint last', async () => {
    const sink = new FakeSink(poison(13));
    const batch: SinkBatch = { changes: changes(...range(1, 20)), deadLetters: [], checkpoint };
    const outcome = await applyBatch(sink, batch, 's1', policy, {});

    const expected = range(1, 20).filter((id) => id !== 13);
    expect(ids(outcome.applied)).toEqual(expected);
    expect(outcome.written).toBe(19);
    expect([...sink.rows.keys()].map((k) => JSON.parse(k).id).sort((a, b) => a - b)).toEqual(expected);

    expect(outcome.failed).toHaveLength(1);
    expect(outcome.failed[0]!.event.key).toEqual({ id: 13 });
    expect(outcome.failed[0]!.reason).toBe('constraint');
    expect(outcome.failed[0]!.error).toBeInstanceOf(PermanentError);

    expect(sink.deadLetters).toHaveLength(1);
    const letter = sink.deadLetters[0]!;
    expect(letter).toMatchObject({ stream: 's1', table: 'public.t', key: { id: 13 }, reason: 'constraint', position: '13' });
    expect(letter.error).toContain('violates check constraint');
    expect(JSON.parse(letter.payload)).toMatchObject({ op: 'insert', key: { id: 13 }, row: { id: 13, name: 'row 13' } });

    // The checkpoint is committed once, by the last call, after every part.
    const committed = sink.calls.filter((c) => c.ok);
    expect(committed.filter((c) => c.batch.checkpoint)).toHaveLength(1);
    const last = sink.calls.at(-1)!;
    expect(last.ok).toBe(true);
    expect(last.batch.checkpoint).toEqual(checkpoint);
    expect(last.batch.changes).toEqual([]);
    expect(last.batch.deadLetters).toEqual([letter]);
    // Parts carry no checkpoint and no dead letters.
    for (const call of sink.calls.slice(1, -1)) {
      expect(call.batch.checkpoint).toBeUndefined();
      expect(call.batch.deadLetters).toEqual([]);
    }
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('isolates several poison changes and keeps the batch dead letters', async () => {
    const sink = new FakeSink(poison(2, 13, 14, 20));
    const earlier: DeadLetter = { stream: 's1', table: 'public.t', key: { id: 99 }, payload: 'x', error: 'unreadable', reason: 'malformed', position: '5' };
    const outcome = await applyBatch(sink, { changes: changes(...range(1, 20)), deadLetters: [earlier], checkpoint }, 's1', policy, {});
    expect(ids(outcome.applied)).toEqual(range(1, 20).filter((id) => ![2, 13, 14, 20].includes(id)));
    expect(outcome.failed.map((f) => f.event.key.id)).toEqual([2, 13, 14, 20]);
    expect(sink.deadLetters.map((d) => d.key)).toEqual([{ id: 99 }, { id: 2 }, { id: 13 }, { id: 14 }, { id: 20 }]);
    expect(sink.deadLetters[0]).toEqual(earlier);
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('dead-letters a batch of one poison change and still writes the checkpoint', async () => {
    const sink = new FakeSink(poison(13));
    const outcome = await applyBatch(sink, { changes: changes(13), deadLetters: [], checkpoint }, 's1', policy, {});
    expect(outcome.applied).toEqual([]);
    expect(outcome.failed.map((f) => f.event.key.id)).toEqual([13]);
    expect(sink.deadLetters.map((d) => d.key)).toEqual([{ id: 13 }]);
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('applies the parts in batch order, so parents still precede children', async () => {
    const sink = new FakeSink(poison(5, 11));
    const order = [9, 3, 17, 1, 5, 12, 8, 11, 2, 20, 4];
    await applyBatch(sink, { changes: changes(...order), deadLetters: [], checkpoint }, 's1', policy, {});
    expect(ids(sink.committedChanges())).toEqual(order.filter((id) => id !== 5 && id !== 11));
  });

  it('retries a transient error inside a part and still isolates the poison change', async () => {
    let transientLeft = 2;
    const sink = new FakeSink((batch, call) => {
      if (call > 1 && transientLeft > 0) {
        transientLeft -= 1;
        return new TransientError('deadlock');
      }
      return poison(13)(batch);
    });
    const outcome = await applyBatch(sink, { changes: changes(...range(10, 16)), deadLetters: [], checkpoint }, 's1', policy, {});
    expect(ids(outcome.applied)).toEqual([10, 11, 12, 14, 15, 16]);
    expect(outcome.failed.map((f) => f.event.key.id)).toEqual([13]);
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('calls onStalled once after `attempts` failures while retrying goes on', async () => {
    const sink = new FakeSink((_batch, call) => (call <= 5 ? new TransientError('server unavailable') : undefined));
    const stalledAtCall: number[] = [];
    let retries = 0;
    const outcome = await applyBatch(
      sink,
      { changes: changes(1, 2, 3), deadLetters: [], checkpoint },
      's1',
      { attempts: 3, minDelayMs: 1, maxDelayMs: 5 },
      { onStalled: () => stalledAtCall.push(sink.calls.length), onRetry: () => retries++ },
    );
    expect(stalledAtCall).toEqual([3]);
    expect(retries).toBe(5);
    expect(sink.calls).toHaveLength(6);
    expect(ids(outcome.applied)).toEqual([1, 2, 3]);
    expect(sink.checkpoints).toEqual(['20']);
  });

  it('rethrows an error that is neither transient nor permanent without splitting', async () => {
    const error = new ConfigError('column "x" does not exist');
    const sink = new FakeSink(() => error);
    await expect(applyBatch(sink, { changes: changes(1, 2, 3, 4), deadLetters: [], checkpoint }, 's1', policy, {})).rejects.toBe(error);
    expect(sink.calls).toHaveLength(1);
    expect(sink.checkpoints).toEqual([]);
  });

  it('rethrows a permanent error of a batch without changes (nothing to isolate)', async () => {
    const error = new PermanentError('dead letter table missing');
    const sink = new FakeSink(() => error);
    const letter: DeadLetter = { stream: 's1', table: 'public.t', key: null, payload: '{', error: 'bad', reason: 'malformed', position: '1' };
    await expect(applyBatch(sink, { changes: [], deadLetters: [letter], checkpoint }, 's1', policy, {})).rejects.toBe(error);
    expect(sink.calls).toHaveLength(1);
  });

  it('stops when the signal aborts while retrying, without writing the checkpoint', async () => {
    const controller = new AbortController();
    const sink = new FakeSink((_batch, call) => {
      if (call === 3) controller.abort(new Error('stopping'));
      return new TransientError('timeout');
    });
    await expect(
      applyBatch(sink, { changes: changes(1, 2), deadLetters: [], checkpoint }, 's1', policy, { signal: controller.signal }),
    ).rejects.toBeInstanceOf(Error);
    expect(sink.calls).toHaveLength(3);
    expect(sink.checkpoints).toEqual([]);
  });
});
