import { Observable } from 'rxjs';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Source } from '../../src/cdc/source.js';
import type { ChangeEvent, SourceChunk } from '../../src/core/change-event.js';
import type { TargetTable } from '../../src/core/mapping.js';
import { ITEMS_TARGET } from '../support/items-target.js';
import { streamSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { ApplyResult, Sink, SinkBatch } from '../../src/sinks/sink.js';
import { Stream } from '../../src/streams/stream.js';
import { FileConflictLog } from '../../src/dead-letters/file-conflict-log.js';
import { lostToStored } from '../../src/sinks/conflicts.js';
import { ConfigError, TransientError } from '../../src/core/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TARGET = ITEMS_TARGET;

function chunk(id: number): SourceChunk {
  const event: ChangeEvent = { table: 'public.items', op: 'insert', key: { id }, row: { id, name: `item ${id}` }, before: null, position: String(id), commitTime: new Date() };
  return { events: [event], rejected: [], position: String(id), caughtUp: true };
}

/** Hands out chunk 1, 2, 3… one per demand, and records when each was asked for. */
class ScriptedSource implements Source {
  readonly log: string[] = [];
  async open(): Promise<void> {}
  chunks(_from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return new Observable<SourceChunk>((subscriber) => {
      let next = 1;
      const give = () => {
        this.log.push(`read ${next}`);
        subscriber.next(chunk(next++));
      };
      give();
      const subscription = demand.subscribe(give);
      return () => subscription.unsubscribe();
    });
  }
  wake(): void {}
  async close(): Promise<void> {}
}

/** Each apply waits until the test lets it finish; records prepare and apply calls in order. */
class GatedSink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  readonly log: string[] = [];
  private release: (() => void)[] = [];
  checkpoint: string | null = null;
  async open(): Promise<TargetTable[]> {
    return [TARGET];
  }
  bind(): void {}
  async readCheckpoint(): Promise<string | null> {
    return this.checkpoint;
  }
  prepare(changes: ChangeEvent[]): void {
    this.log.push(`prepare ${changes.map((c) => c.key.id).join(',')}`);
  }
  async apply(batch: SinkBatch): Promise<ApplyResult> {
    const ids = batch.changes.map((c) => c.key.id).join(',');
    this.log.push(`apply ${ids}`);
    await new Promise<void>((resolve) => this.release.push(resolve));
    this.log.push(`done ${ids}`);
    if (batch.checkpoint) this.checkpoint = batch.checkpoint.position;
    return { written: batch.changes.length };
  }
  finishOne(): void {
    this.release.shift()?.();
  }
  async close(): Promise<void> {}
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i += 1) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
};

/** A stream of one table from a ScriptedSource into `sink`, one change per batch, running. */
function start(name: string, sink: Sink) {
  const source = new ScriptedSource();
  const config = streamSchema.parse({
    name,
    source: { type: 'postgres-changelog', url: 'postgres://unused' },
    sink: { type: 'postgres', url: 'postgres://unused' },
    tables: [{ source: 'public.items', target: 'public.items' }],
    batch: { maxSize: 1, maxWaitMs: 0 },
  });
  const stream = new Stream({ config, path: 'streams[0]', source, sink, checkpoints: null, metrics: createMetrics(new Registry()), log: createLogger('silent') });
  return { source, stream, running: stream.run() };
}

/** Stops the stream, letting the sink finish whatever it is given until the stream has ended. */
async function stopFinishing(stream: Stream, running: Promise<void>, sink: GatedSink): Promise<void> {
  stream.stop();
  let settled = false;
  void running.then(() => (settled = true));
  while (!settled) {
    sink.finishOne();
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('Stream', () => {
  it('reads and prepares the next batch while the sink writes the previous one, and commits batches in order; a stop finishes the batch being written', async () => {
    const sink = new GatedSink();
    const { source, stream, running } = start('ahead', sink);

    // Batch 1 is being written; batch 2 is already read and prepared, batch 3 not yet read (one batch ahead, no more).
    await until(() => sink.log.includes('prepare 2'));
    expect(sink.log).toEqual(['prepare 1', 'apply 1', 'prepare 2']);
    expect(source.log).toEqual(['read 1', 'read 2']);

    sink.finishOne();
    await until(() => sink.log.includes('prepare 3'));
    expect(sink.log).toEqual(['prepare 1', 'apply 1', 'prepare 2', 'done 1', 'apply 2', 'prepare 3']);
    expect(sink.checkpoint).toBe('1');

    sink.finishOne();
    await until(() => sink.log.includes('prepare 4'));
    await stopFinishing(stream, running, sink);
    // The batch being written when the stop came is finished; the one read ahead is not applied (the next run reads it again).
    expect(sink.log.filter((l) => l.startsWith('done'))).toEqual(['done 1', 'done 2', 'done 3']);
    expect(source.log).toEqual(['read 1', 'read 2', 'read 3', 'read 4']);
    expect(sink.checkpoint).toBe('3');
  });

  it('with a sink that says when its statements are sent, reads the next batch then, not before', async () => {
    const sink = new SignallingSink();
    const { source, stream, running } = start('sent', sink);

    await until(() => sink.log.includes('apply 1'));
    await new Promise((r) => setTimeout(r, 30));
    // Batch 1 is being applied but its statements are not sent yet: batch 2 waits unread.
    expect(source.log).toEqual(['read 1']);
    sink.sent();
    await until(() => sink.log.includes('prepare 2'));
    expect(source.log).toEqual(['read 1', 'read 2']);
    // A batch whose sink never says so is followed once it is done.
    sink.finishOne();
    await until(() => sink.log.includes('apply 2'));
    sink.finishOne();
    await until(() => source.log.includes('read 3'));
    expect(sink.log.slice(0, 5)).toEqual(['prepare 1', 'apply 1', 'prepare 2', 'done 1', 'apply 2']);

    await stopFinishing(stream, running, sink);
  });
});

describe('Stream, conflicts a sink reports without logging them', () => {
  it('appends their entries (incoming, stored and winning row) to the conflict log file and counts them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-conflicts-'));
    const log = new FileConflictLog(join(dir, 'conflicts.jsonl'));
    const sink = new ConflictingSink();
    const source = new ScriptedSource();
    const config = streamSchema.parse({
      name: 'clinic-to-portal',
      source: { type: 'postgres-changelog', url: 'postgres://unused' },
      sink: { type: 'postgres', url: 'postgres://unused' },
      tables: [{ source: 'public.items', target: 'public.items' }],
      batch: { maxSize: 1, maxWaitMs: 0 },
    });
    const metrics = createMetrics(new Registry());
    const stream = new Stream({ config, path: 'streams[0]', source, sink, checkpoints: null, deadLetters: null, conflictLog: log, metrics, log: createLogger('silent') });
    const running = stream.run();
    await until(() => sink.applied >= 2);
    stream.stop();
    await running;
    const lines = await log.read();
    expect(lines.slice(0, 2).map((l) => [l.key, l.winner, l.incoming, l.stored])).toEqual([
      [{ id: 1 }, 'stored', { id: 1, name: 'item 1' }, { id: 1, name: 'portal', data: '\\x00ff' }],
      [{ id: 2 }, 'stored', { id: 2, name: 'item 2' }, { id: 2, name: 'portal', data: '\\x00ff' }],
    ]);
    expect(lines[0]!.loggedAt).toMatch(/^\d{4}-/);
    expect((await metrics.registry.getSingleMetric('cdc_sync_conflicts_total')!.get()).values.reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(2);
    rmSync(dir, { recursive: true, force: true });
  });
});

/** Every change loses to a stored portal row; the entry goes back to the stream (as the supabase sink's do). */
class ConflictingSink implements Sink {
  readonly storesCheckpoints = false;
  readonly storesDeadLetters = false;
  applied = 0;
  async open(): Promise<TargetTable[]> {
    return [TARGET];
  }
  bind(): void {}
  async readCheckpoint(): Promise<string | null> {
    return null;
  }
  async apply(batch: SinkBatch): Promise<ApplyResult> {
    this.applied += 1;
    return {
      written: 0,
      conflicts: batch.changes.map((e) => {
        const stored = { id: e.key.id!, name: 'portal', data: new Uint8Array([0, 255]) };
        return { table: e.table, key: e.key, entry: lostToStored('clinic-to-portal', e, stored, new Date()) };
      }),
    };
  }
  async close(): Promise<void> {}
}

/** A GatedSink that reports its statements sent only when the test says so. */
class SignallingSink extends GatedSink {
  readonly signalsSent = true;
  private onSent: (() => void) | undefined;
  override async apply(batch: SinkBatch): Promise<ApplyResult> {
    this.onSent = batch.onSent;
    return super.apply(batch);
  }
  sent(): void {
    this.onSent?.();
  }
}

describe('Stream.check (cdc-sync validate)', () => {
  it('checks the sink’s tables and the mapping for a source that takes no table order (supabase-realtime)', async () => {
    const source = new ScriptedSource();
    expect('order' in source).toBe(false);
    const opened: string[] = [];
    const sink = new GatedSink();
    sink.open = async () => {
      opened.push('sink');
      return [{ ...TARGET, columns: TARGET.columns.filter((c) => c.name !== 'name') }];
    };
    const config = streamSchema.parse({
      name: 'check',
      source: { type: 'postgres-changelog', url: 'postgres://unused' },
      sink: { type: 'postgres', url: 'postgres://unused' },
      tables: [{ source: 'public.items', target: 'public.items', columns: { name: 'name' } }],
    });
    const stream = new Stream({ config, path: 'streams[0]', source, sink, checkpoints: null, metrics: createMetrics(new Registry()), log: createLogger('silent') });
    await expect(stream.check()).rejects.toThrow(/name/);
    expect(opened).toEqual(['sink']);
  });
});

describe('Stream, opening', () => {
  const config = (name: string) =>
    streamSchema.parse({
      name,
      source: { type: 'postgres-changelog', url: 'postgres://unused' },
      sink: { type: 'postgres', url: 'postgres://unused' },
      tables: [{ source: 'public.items', target: 'public.items' }],
      retry: { attempts: 3, minDelayMs: 5, maxDelayMs: 5 },
    });

  /** A stream of `source` whose sink finds its target table missing after `delayMs`. */
  const failingToOpen = (name: string, source: ScriptedSource, delayMs: number) => {
    const sink = new GatedSink();
    sink.open = async () => {
      await new Promise((r) => setTimeout(r, delayMs));
      throw new ConfigError('tables[0].target: table public.items does not exist in the sink database');
    };
    return new Stream({ config: config(name), path: 'streams[0]', source, sink, checkpoints: null, metrics: createMetrics(new Registry()), log: createLogger('silent') });
  };

  it('opens the source and the sink at once, and gives the source the table order and text rows before its chunks', async () => {
    const calls: string[] = [];
    let sinkOpened!: () => void;
    const sink = new GatedSink();
    sink.open = async () => {
      calls.push('sink open');
      // The sink answers only once the source has begun opening: opened one after the other, this never ends.
      await new Promise<void>((resolve) => (sinkOpened = resolve));
      return [{ ...TARGET, textRows: true }];
    };
    const source = new ScriptedSource();
    source.open = async () => {
      calls.push('source open');
      sinkOpened();
    };
    const withOrder = Object.assign(source, {
      order: (tables: string[]) => calls.push(`order ${tables.join(',')}`),
      textRows: (tables: string[]) => calls.push(`text rows ${tables.join(',')}`),
    });
    const chunks = source.chunks.bind(source);
    source.chunks = (from, demand) => {
      calls.push('chunks');
      return chunks(from, demand);
    };
    const stream = new Stream({ config: config('both'), path: 'streams[0]', source: withOrder, sink, checkpoints: null, metrics: createMetrics(new Registry()), log: createLogger('silent') });
    const running = stream.run();
    await until(() => calls.includes('chunks'));
    expect(calls.slice(0, 2).sort()).toEqual(['sink open', 'source open']);
    expect(calls.slice(2)).toEqual(['order public.items', 'text rows public.items', 'chunks']);
    await stopFinishing(stream, running, sink);
  });

  it('fails with the sink’s configuration error while the source is still being retried, and stops retrying the source', async () => {
    let sourceAttempts = 0;
    const source = new ScriptedSource();
    source.open = async () => {
      sourceAttempts += 1;
      throw new TransientError('source database unreachable');
    };
    await expect(failingToOpen('sink-wrong', source, 30).run()).rejects.toThrow(/does not exist in the sink database/);
    const attempts = sourceAttempts;
    expect(attempts).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(sourceAttempts).toBe(attempts);
  });

  it('reports the sink’s configuration error when both sides are misconfigured, whichever fails first', async () => {
    const source = new ScriptedSource();
    source.open = async () => {
      throw new ConfigError('tables[0].source: table public.items does not exist in the source database');
    };
    // The sink answers later than the source, as a cold database does: the report must not depend on who is faster.
    await expect(failingToOpen('both-wrong', source, 20).run()).rejects.toThrow(/does not exist in the sink database/);
  });
});
