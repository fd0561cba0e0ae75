import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { CronSchedule, runOnSchedule } from '../../src/commands/schedule.js';
import { parseConfig } from '../../src/config/load.js';

const YAML = `
streams:
  - name: pos-to-cloud
    source: { type: sqlite-changelog, url: "sqlite:./pos.db" }
    sink: { type: postgres, url: "postgres://localhost/cloud" }
    tables: [{ source: orders, target: public.orders }]
`;

const local = (text: string) => new Date(text); // no zone: local time, as cron reads it

describe('cron schedule (SYNC_MODE=cron)', () => {
  it('finds the next tick of the expressions the older sync documented', () => {
    expect(new CronSchedule('0 * * * *').next(local('2030-01-01T10:00:00'))).toEqual(local('2030-01-01T11:00:00'));
    expect(new CronSchedule('0 * * * *').next(local('2030-01-01T10:59:59'))).toEqual(local('2030-01-01T11:00:00'));
    expect(new CronSchedule('*/15 * * * *').next(local('2030-01-01T10:16:00'))).toEqual(local('2030-01-01T10:30:00'));
    expect(new CronSchedule('30 2 * * *').next(local('2030-01-01T03:00:00'))).toEqual(local('2030-01-02T02:30:00'));
    // 2030-01-07 is a Monday.
    expect(new CronSchedule('0 9 * * 1').next(local('2030-01-01T00:00:00'))).toEqual(local('2030-01-07T09:00:00'));
    expect(new CronSchedule('0 0 1,15 * 0').next(local('2030-01-02T00:00:00'))).toEqual(local('2030-01-06T00:00:00'));
  });

  it('rejects expressions it cannot read, naming the config key', () => {
    expect(() => new CronSchedule('* * * *')).toThrow(/five fields/);
    expect(() => new CronSchedule('61 * * * *')).toThrow(/outside 0-59/);
    expect(() => parseConfig(`${YAML}schedule: { cron: "every hour" }\n`, {})).toThrow(/schedule\.cron/);
  });

  it('takes SYNC_MODE=cron and SYNC_CRON from the environment; the file wins; continuous mode has no schedule', () => {
    expect(parseConfig(YAML, { SYNC_MODE: 'cron', SYNC_CRON: '*/5 * * * *' }).schedule).toEqual({ cron: '*/5 * * * *' });
    expect(parseConfig(`${YAML}schedule: { cron: "0 * * * *" }\n`, { SYNC_MODE: 'cron', SYNC_CRON: '*/5 * * * *' }).schedule).toEqual({ cron: '0 * * * *' });
    expect(parseConfig(YAML, { SYNC_MODE: 'continuous', SYNC_CRON: '*/5 * * * *' }).schedule).toBeUndefined();
    expect(() => parseConfig(YAML, { SYNC_MODE: 'cron' })).toThrow(/schedule\.cron/);
  });

  it('drains once per tick until stopped, and gives up on a configuration error', async () => {
    const every20ms = { expression: 'test', next: (after: Date) => new Date(after.getTime() + 20) };
    const log = pino({ level: 'silent' });
    const cancel = new AbortController();
    let runs = 0;
    const code = await runOnSchedule(
      every20ms,
      async () => {
        runs += 1;
        if (runs === 3) cancel.abort();
        return runs === 2 ? 1 : 0; // a failed run is tried again at the next tick
      },
      log,
      cancel.signal,
    );
    expect({ code, runs }).toEqual({ code: 0, runs: 3 });
    expect(await runOnSchedule(every20ms, async () => 2, log)).toBe(2);
  });
});
