import { describe, expect, it } from 'vitest';
import { QueuePosition } from '../../../src/cdc/mssql/queue-position.js';

describe('QueuePosition', () => {
  it('round-trips snapshot progress and the chunk counter as small JSON', () => {
    const p = QueuePosition.start.withSnapshot('dbo.a', null).withSnapshot('dbo.b', ['x', 2]).next();
    expect(p.toString()).toBe('{"seq":1,"snapshot":{"dbo.a":null,"dbo.b":["x",2]}}');
    expect(QueuePosition.parse(p.toString())).toEqual(p);
    expect(p.snapping).toBe(true);
  });

  it('drops a table once copied and leaves only the counter when nothing is left to copy', () => {
    const p = QueuePosition.parse('{"seq":7,"snapshot":{"dbo.a":[5]}}').withSnapshot('dbo.a', undefined).next();
    expect(p.toString()).toBe('{"seq":8}');
    expect(p.snapping).toBe(false);
  });

  it('refuses text that is not a queue position (another source type wrote the checkpoint)', () => {
    expect(() => QueuePosition.parse('0000002A000001F00003')).toThrow(/not an mssql-queue position/);
    expect(() => QueuePosition.parse('{"lsn":"00"}')).toThrow(/not an mssql-queue position/);
  });
});
