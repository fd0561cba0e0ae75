import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { guardProcess } from '../../src/commands/process-guard.js';

describe('guardProcess', () => {
  it('turns an error that escaped every stream into a log line and a reopen instead of an exit, and can be removed', () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const reopened: unknown[] = [];
    const before = process.listenerCount('uncaughtException');
    const unguard = guardProcess(log, (error) => reopened.push(error));
    expect(process.listenerCount('uncaughtException')).toBe(before + 1);
    // What pg does when a client nobody listens to loses its server: an 'error' event that would kill the process.
    const escaped = new Error('Connection terminated unexpectedly');
    const listener = process.listeners('uncaughtException').at(-1)!;
    listener(escaped, 'uncaughtException');
    const rejection = process.listeners('unhandledRejection').at(-1)!;
    rejection(new Error('read ECONNRESET'), Promise.resolve());
    expect(reopened).toEqual([escaped, expect.objectContaining({ message: 'read ECONNRESET' })]);
    expect(lines.map((l) => [l.level, l.err])).toEqual([
      [50, 'Connection terminated unexpectedly'],
      [50, 'read ECONNRESET'],
    ]);
    unguard();
    expect(process.listenerCount('uncaughtException')).toBe(before);
  });
});
