import { Observable } from 'rxjs';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Source } from '../../src/cdc/source.js';
import { readWithRetry } from '../../src/cdc/read-with-retry.js';
import type { ChangeEvent, SourceChunk } from '../../src/core/change-event.js';
import { ConfigError, TransientError, PermanentError, type CdcSyncError } from '../../src/core/errors.js';
import type { TargetTable } from '../../src/core/mapping.js';
import { ITEMS_TARGET } from '../support/items-target.js';
import { streamSchema } from '../../src/config/schema.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import type { ApplyResult, Sink, SinkBatch } from '../../src/sinks/sink.js';
import type { StreamContext } from '../../src/streams/context.js';
import { Stream } from '../../src/streams/stream.js';

/** How a stream shows faults of its source and sink: state, connected, lag, the log. */
const TARGET = ITEMS_TARGET;

function change(id: number, commitTime = new Date()): ChangeEvent {
  return { table: 'public.items', op: 'insert', key: { id }, row: { id, name: `item ${id}` }, before: null, position: String(id), commitTime };
}

/** A sink whose answers the test controls: apply and ping wait for `answer()` or fail with `fail`. */
class ControlledSink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  applied: number[] = [];
  checkpoint: string | null = null;
  hang = false;
  pings = 0;
  openError: Error | null = null;
  private waiting: (() => void)[] = [];
  async open(context: StreamContext): Promise<TargetTable[]> {
    if (this.openError) throw this.openError;
    context.setConnected('sink', true);
    return [TARGET];
  }
  bind(): void {}
  async readCheckpoint(): Promise<string | null> {
    return this.checkpoint;
  }
  async apply(batch: SinkBatch): Promise<ApplyResult> {
    if (this.hang) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.applied.push(...batch.changes.map((c) => Number(c.key.id)));
    if (batch.checkpoint) this.checkpoint = batch.checkpoint.position;
    return { written: batch.changes.length };
  }
  async ping(): Promise<void> {
    this.pings += 1;
    if (this.hang) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  answer(): void {
    this.hang = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
  async close(): Promise<void> {}
}

/** Emits the given chunks on demand; `reads` counts subscriptions (a reopen subscribes again from the checkpoint). */
class ListSource implements Source {
  subscriptions: (string | null)[] = [];
  context: StreamContext | undefined;
  constructor(private readonly chunks_: (from: string | null) => SourceChunk[]) {}
  async open(context: StreamContext): Promise<void> {
    this.context = context;
    context.setConnected('source', true);
  }
  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    this.subscriptions.push(from);
    const list = this.chunks_(from);
    return new Observable<SourceChunk>((subscriber) => {
      const give = () => {
        const next = list.shift();
        if (next) subscriber.next(next);
        else this.context?.idle?.();
      };
      give();
      const s = demand.subscribe(give);
      return () => s.unsubscribe();
    });
  }
  wake(): void {}
  async close(): Promise<void> {}
}

function build(source: Source, sink: Sink, extra: Record<string, unknown> = {}) {
  const config = streamSchema.parse({
    name: 's',
    source: { type: 'postgres-changelog', url: 'postgres://unused' },
    sink: { type: 'postgres', url: 'postgres://user:secret@db.example:5432/portal' },
    tables: [{ source: 'public.items', target: 'public.items' }],
    batch: { maxSize: 10, maxWaitMs: 0 },
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 20 },
    ...extra,
  });
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const metrics: Metrics = createMetrics(new Registry());
  const stream = new Stream({ config, path: 'streams[0]', source, sink, checkpoints: null, metrics, log });
  const gauge = async (name: 'lag' | 'connected') => (await metrics[name].get()).values.find((v) => v.labels.stream === 's')?.value;
  return { stream, lines, metrics, gauge };
}

const until = async (check: () => boolean | Promise<boolean>, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!(await check()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(await check()).toBe(true);
};

describe('Stream faults', () => {
  it("shows a source's failing reads as retrying, then stalled, logging each attempt with the part, and running again once a read succeeds", async () => {
    let failures = 5;
    const source = new ListSource(() => []);
    const sink = new ControlledSink();
    // The source's read goes through readWithRetry, as every polling source's does.
    source.chunks = (_from, demand) =>
      new Observable<SourceChunk>((subscriber) => {
        const read = () =>
          readWithRetry(
            source.context!,
            { attempts: 3, minDelayMs: 10, maxDelayMs: 20 },
            { error: (e) => e as CdcSyncError, lostConnection: () => true },
            async () => {
              if (failures > 0) {
                failures -= 1;
                throw new TransientError('connect ECONNREFUSED 10.0.0.9:5432');
              }
              return [change(1)];
            },
          ).then((events) => subscriber.next({ events, rejected: [], position: '1', caughtUp: true }));
        void read();
        const s = demand.subscribe(() => source.context?.idle?.());
        return () => s.unsubscribe();
      });
    const { stream, lines } = build(source, sink);
    const states = new Set<string>();
    const running = stream.run();
    await until(() => {
      states.add(stream.status().state);
      return sink.applied.includes(1);
    });
    expect(states).toContain('stalled');
    expect(stream.status()).toMatchObject({ state: 'running', connected: true });
    const retries = lines.filter((l) => l.part === 'source');
    expect(retries).toHaveLength(5);
    expect(retries.map((l) => l.msg)).toContain('still failing after the configured attempts; retrying until it recovers');
    expect(retries[0]!.err).toContain('ECONNREFUSED');
    stream.stop();
    await running;
  });

  it('lets the lag grow while a read batch waits for a sink that does not answer, from the oldest waiting change', async () => {
    const sink = new ControlledSink();
    sink.hang = true;
    const source = new ListSource(() => [{ events: [change(1, new Date(Date.now() - 5000))], rejected: [], position: '1', caughtUp: true }]);
    const { stream, gauge } = build(source, sink);
    const running = stream.run();
    await until(async () => ((await gauge('lag')) ?? 0) >= 5);
    const first = (await gauge('lag'))!;
    await new Promise((r) => setTimeout(r, 1100));
    expect((await gauge('lag'))!).toBeGreaterThan(first);
    sink.answer();
    await until(() => sink.applied.includes(1));
    // Applied: the lag is that change's, and no longer grows.
    const applied = (await gauge('lag'))!;
    await new Promise((r) => setTimeout(r, 1100));
    expect(await gauge('lag')).toBe(applied);
    stream.stop();
    await running;
  });

  it('shows an idle sink that stops answering its probe as lost within the liveness time, names the database, and shows it back when it answers', async () => {
    const sink = new ControlledSink();
    const source = new ListSource(() => []);
    const { stream, gauge, lines } = build(source, sink, { liveness: { timeoutMs: 900 } });
    const running = stream.run();
    await until(async () => (await gauge('connected')) === 1);
    sink.hang = true;
    const since = Date.now();
    await until(async () => (await gauge('connected')) === 0, 3000);
    expect(Date.now() - since).toBeLessThan(900 + 2500); // the liveness time, plus the once-a-second tick and a loaded machine
    expect(stream.status().lastError).toContain('db.example:5432/portal');
    expect(stream.status().lastError).not.toContain('secret');
    expect(lines.some((l) => l.part === 'sink' && l.msg === 'transient error; retrying')).toBe(true);
    sink.answer();
    await until(async () => (await gauge('connected')) === 1, 3000);
    expect(stream.status().state).toBe('running');
    stream.stop();
    await running;
  });

  it('stops with state failed on a configuration error once it has run (no retry), and rejects at start before it ever ran', async () => {
    const sink = new ControlledSink();
    sink.openError = new ConfigError('sink.url: password authentication failed for user "sync"', { context: { code: '28P01' } });
    const atStart = build(new ListSource(() => []), sink);
    await expect(atStart.stream.run()).rejects.toThrow('streams[0].sink.url: password authentication failed for user "sync"');
    expect(atStart.stream.started).toBe(false);
    expect(atStart.stream.status().state).toBe('failed');

    const later = new ControlledSink();
    let reads = 0;
    const source = new ListSource(() => (reads++ === 0 ? [{ events: [change(1)], rejected: [], position: '1', caughtUp: true }] : []));
    const running = build(source, later);
    const done = running.stream.run();
    await until(() => later.applied.includes(1));
    // The password changes under the running stream: the next reopen finds it.
    later.openError = new ConfigError('sink.url: password authentication failed for user "sync"', { context: { code: '28P01' } });
    running.stream.reopen(new Error('connection reset'));
    await expect(done).rejects.toThrow(/sink\.url: password authentication failed/);
    expect(running.stream.started).toBe(true);
    expect(running.stream.status()).toMatchObject({ state: 'failed', connected: false });
  });

  it('reopen() ends the running pipeline, lets the batch in flight finish, and reads again from the checkpoint', async () => {
    const sink = new ControlledSink();
    const source = new ListSource((from) => (from === null ? [{ events: [change(1)], rejected: [], position: '1', caughtUp: true }] : [{ events: [change(2)], rejected: [], position: '2', caughtUp: true }]));
    const { stream } = build(source, sink);
    const running = stream.run();
    await until(() => sink.applied.includes(1));
    stream.reopen(new Error('Connection terminated unexpectedly'));
    await until(() => sink.applied.includes(2));
    expect(source.subscriptions).toEqual([null, '1']);
    stream.stop();
    await running;
  });

  it('starts its reopen backoff over once a batch commits again: failures hours apart do not add up to the longest wait', async () => {
    const sink = new ControlledSink();
    let next = 0;
    const source = new ListSource(() => [{ events: [change((next += 1))], rejected: [], position: String(next), caughtUp: true }]);
    const { stream, lines } = build(source, sink, { retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 60_000 } });
    const running = stream.run();
    for (let blip = 1; blip <= 8; blip += 1) {
      await until(() => sink.applied.length === blip);
      stream.reopen(new Error('Connection terminated unexpectedly'));
    }
    await until(() => sink.applied.length === 9);
    // Each blip came after a committed batch: each is the first failure in a row, and waited minDelayMs · 2, not 10 · 2^8 ms.
    const counts = lines.filter((l) => l.msg === 'stream failed; reopening from the last checkpoint').map((l) => l.failures);
    expect(counts).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    stream.stop();
    await running;
  });

  it('a permanent error of the sink at open is neither swallowed nor retried as a configuration error', async () => {
    const sink = new ControlledSink();
    sink.openError = new PermanentError('relation "cdc_sync.checkpoints" is locked');
    const { stream } = build(new ListSource(() => []), sink);
    const running = stream.run();
    await until(() => stream.status().state === 'failed');
    expect(stream.status().lastError).toContain('locked');
    stream.stop();
    await running;
  });
});
