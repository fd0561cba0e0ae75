import { describe, expect, it } from 'vitest';
import { ConfigError, PermanentError, TransientError } from '../../src/core/errors.js';
import { retryTransient, type RetryPolicy } from '../../src/streams/retry.js';

const fast: RetryPolicy = { attempts: 10, minDelayMs: 1, maxDelayMs: 5 };

describe('retryTransient', () => {
  it('retries transient errors until the operation succeeds', async () => {
    let calls = 0;
    const retries: number[] = [];
    const result = await retryTransient(
      async () => {
        calls += 1;
        if (calls < 4) throw new TransientError('connection reset');
        return 'done';
      },
      fast,
      { onRetry: (_error, attempt) => retries.push(attempt) },
    );
    expect(result).toBe('done');
    expect(calls).toBe(4);
    expect(retries).toEqual([1, 2, 3]);
  });

  it('does not retry a permanent error: one call, rejected with that error', async () => {
    let calls = 0;
    let retried = 0;
    const error = new PermanentError('duplicate key', { reason: 'constraint' });
    await expect(
      retryTransient(
        async () => {
          calls += 1;
          throw error;
        },
        fast,
        { onRetry: () => retried++ },
      ),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
    expect(retried).toBe(0);
  });

  it('does not retry configuration errors or plain errors', async () => {
    for (const error of [new ConfigError('no such table'), new Error('bug')]) {
      let calls = 0;
      await expect(
        retryTransient(async () => {
          calls += 1;
          throw error;
        }, fast),
      ).rejects.toBe(error);
      expect(calls).toBe(1);
    }
  });

  it('stops retrying a permanent error that follows transient ones', async () => {
    let calls = 0;
    const error = new PermanentError('check constraint');
    await expect(
      retryTransient(async () => {
        calls += 1;
        if (calls < 3) throw new TransientError('timeout');
        throw error;
      }, fast),
    ).rejects.toBe(error);
    expect(calls).toBe(3);
  });

  it('never calls the operation when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stopping'));
    let calls = 0;
    await expect(
      retryTransient(
        async () => {
          calls += 1;
          return 1;
        },
        fast,
        { signal: controller.signal },
      ),
    ).rejects.toThrow('stopping');
    expect(calls).toBe(0);
  });

  it('stops retrying when the signal aborts during the backoff wait', async () => {
    const controller = new AbortController();
    let calls = 0;
    const started = Date.now();
    const pending = retryTransient(
      async () => {
        calls += 1;
        throw new TransientError('database unreachable');
      },
      { attempts: 100, minDelayMs: 10_000, maxDelayMs: 30_000 },
      { signal: controller.signal },
    );
    // The first attempt failed at once; abort while waiting 10-20 s for the second.
    setTimeout(() => controller.abort(new Error('stream stopping')), 20);
    await expect(pending).rejects.toThrow('stream stopping');
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('stops retrying when the signal aborts during an attempt', async () => {
    const controller = new AbortController();
    let calls = 0;
    const pending = retryTransient(
      async () => {
        calls += 1;
        if (calls === 2) controller.abort(new Error('stopping'));
        throw new TransientError('timeout');
      },
      fast,
      { signal: controller.signal },
    );
    await expect(pending).rejects.toBeInstanceOf(TransientError);
    // Give a (wrong) further retry time to happen.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(calls).toBe(2);
  });

  it('reports stalled once, after `attempts` failures, and keeps retrying', async () => {
    let calls = 0;
    const stalledAt: number[] = [];
    const result = await retryTransient(
      async () => {
        calls += 1;
        if (calls <= 6) throw new TransientError('overloaded');
        return calls;
      },
      { attempts: 3, minDelayMs: 1, maxDelayMs: 5 },
      { onStalled: () => stalledAt.push(calls) },
    );
    expect(result).toBe(7);
    expect(stalledAt).toEqual([3]);
  });

  it('waits longer after each failure (exponential backoff, capped at maxDelayMs)', async () => {
    const times: number[] = [];
    await retryTransient(
      async () => {
        times.push(performance.now());
        if (times.length < 4) throw new TransientError('busy');
      },
      { attempts: 10, minDelayMs: 20, maxDelayMs: 60 },
    );
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // p-retry waits min(max, min·2^n)·random[1,2), rounded: [20,40), [40,80)→≤60, then capped at 60.
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(55);
    expect(gaps[2]).toBeLessThan(1_000);
  });
});
