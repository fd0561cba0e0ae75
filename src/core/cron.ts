/**
 * A five-field cron expression (minute hour day-of-month month day-of-week),
 * as the older sync's `SYNC_CRON` took it: numbers, `*`, ranges `a-b`, steps
 * `*\/n` and `a-b/n`, lists `a,b`; day-of-week 0–7 with 0 and 7 Sunday. When
 * both day fields are restricted a day matching either runs (cron's rule).
 * Times are the process's local time (set `TZ` to choose another zone).
 * Small enough to keep here instead of a dependency.
 */
export class CronSchedule {
  private readonly fields: Set<number>[];
  private readonly anyDay: { dom: boolean; dow: boolean };

  constructor(readonly expression: string) {
    const parts = expression.trim().split(/\s+/);
    if (parts.length !== 5) throw new Error(`"${expression}" is not a cron expression: five fields (minute hour day month weekday) expected`);
    const limits: [number, number][] = [
      [0, 59],
      [0, 23],
      [1, 31],
      [1, 12],
      [0, 7],
    ];
    this.fields = parts.map((part, i) => parseField(part, limits[i]![0], limits[i]![1], expression));
    if (this.fields[4]!.has(7)) this.fields[4]!.add(0);
    this.anyDay = { dom: parts[2] === '*', dow: parts[4] === '*' };
  }

  matches(date: Date): boolean {
    const [minute, hour, dom, month, dow] = this.fields as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
    if (!minute.has(date.getMinutes()) || !hour.has(date.getHours()) || !month.has(date.getMonth() + 1)) return false;
    const domOk = dom.has(date.getDate());
    const dowOk = dow.has(date.getDay());
    if (this.anyDay.dom || this.anyDay.dow) return domOk && dowOk;
    return domOk || dowOk;
  }

  /** The first matching minute strictly after `after`. */
  next(after: Date): Date {
    const t = new Date(after.getTime());
    t.setSeconds(0, 0);
    t.setMinutes(t.getMinutes() + 1);
    // At most a few years of minutes (29 February on a Monday is rare, not impossible).
    for (let i = 0; i < 60 * 24 * 366 * 8; i += 1) {
      if (this.matches(t)) return t;
      t.setMinutes(t.getMinutes() + 1);
    }
    throw new Error(`cron expression "${this.expression}" never matches`);
  }
}

function parseField(part: string, min: number, max: number, expression: string): Set<number> {
  const values = new Set<number>();
  for (const item of part.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item);
    if (!m) throw new Error(`cron expression "${expression}": cannot read "${item}"`);
    const from = m[1] === '*' ? min : Number(m[2]);
    const to = m[1] === '*' ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : from;
    const step = m[4] !== undefined ? Number(m[4]) : 1;
    if (from < min || to > max || from > to || step < 1) throw new Error(`cron expression "${expression}": "${item}" is outside ${min}-${max}`);
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return values;
}

export function isCronExpression(text: string): boolean {
  try {
    new CronSchedule(text);
    return true;
  } catch {
    return false;
  }
}
