import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runCliToEnd, writeConfig } from '../support/cli.js';
import { describeHistory, replayCommand, type Edit, type Step } from './history.js';
import { CliRunner, InProcessRunner, SplitRunner, type Runner } from './runner.js';
import { SPAN, parentImage, type Side, type Snapshot, type UserChange, type Write } from './sides.js';

/** The control API's bearer token in the checker's configuration. */
const TOKEN = 'converge-token';

/** How long a history may take to settle before the checker calls it divergent. */
const IDLE_TIMEOUT_MS = 20_000;
/** …and at most this long while cdc-sync copies existing rows. */
const COPY_TIMEOUT_MS = 120_000;
/** How long a copy request may meet 409 (the stream reopening) before the history fails. */
const COPY_ASK_TIMEOUT_MS = 60_000;

/**
 * Two sides and one cdc-sync process between them, run from a config file
 * through the CLI as a user runs it. Each case works in its own key range
 * (`base`), so one process and one pair of databases serve every case.
 */
export class Pair {
  private runner: Runner | undefined;
  private config = '';
  private cases = 0;
  /**
   * Histories may run at once (CONVERGE_PARALLEL), each in its own key range:
   * a step, a fault or a read of the sides takes its turn, so a server
   * restart never meets another history's edit or read half-way.
   */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(
    readonly a: Side,
    readonly b: Side,
    private readonly options: {
      /** The pair's name in the checker (CONVERGE_PAIR), for the replay command. */
      name: string;
      twoWay: boolean;
      maxSize?: number;
      restartDatabase?: () => Promise<void>;
      /** A Realtime outage on a side that has one. */
      outage?: () => Promise<void>;
      inProcess?: boolean;
      env?: Record<string, string>;
      /** More settings of each table entry, e.g. `updatedAt: updated_at` for a supabase-realtime source. */
      tableOptions?: string;
      /** Streams whose source can copy existing rows (copy steps). */
      copies?: string[];
      /**
       * The forward changes go through NATS JetStream: a-to-b publishes them
       * (nats sink), a second stream applies them to b (nats source).
       */
      via?: { nats: string; partitions?: number };
    },
  ) {}

  async start(): Promise<void> {
    // Children listed first: the order a batch applies tables in must come from the foreign keys, not from here.
    const more = this.options.tableOptions ? `, ${this.options.tableOptions}` : '';
    const tables = `[{ source: child, target: child${more} }, { source: parent, target: parent${more} }]`;
    const batch = `{ maxSize: ${this.options.maxSize ?? 16}, maxWaitMs: 10 }`;
    const reverse = this.options.twoWay
      ? `
  - name: b-to-a
    direction: reverse
    source: ${this.b.source()}
    sink: ${this.a.sink()}
    tables: ${tables}
    batch: ${batch}`
      : '';
    // With partitions, one applying stream per key partition, all in the applying process.
    const partitions = this.options.via?.partitions ?? 1;
    const applying = (p: number | undefined) => `
  - name: nats-to-b${p === undefined ? '' : `-${p}`}
    source: { type: nats, url: "${this.options.via!.nats}", idleIntervalMs: 100, nats: { stream: CONVERGE, from: a-to-b${p === undefined ? '' : `, partitions: ${partitions}, partition: ${p}`} } }
    sink: ${this.b.sink()}
    tables: ${tables}
    batch: ${batch}`;
    const via = !this.options.via ? '' : partitions > 1 ? Array.from({ length: partitions }, (_, p) => applying(p)).join('') : applying(undefined);
    const forwardSink = this.options.via ? `{ type: nats, url: "${this.options.via.nats}", nats: { stream: CONVERGE, replicas: 3, partitions: ${partitions} } }` : this.b.sink();
    const forward = `
  - name: a-to-b
    source: ${this.a.source()}
    sink: ${forwardSink}
    tables: ${tables}
    batch: ${batch}`;
    this.config = writeConfig('');
    // Every process of the pair keeps its files (checkpoints of sinks that store none, dead letters, counted) in the
    // pair's directory: by default they are ./data/… of the working directory, where another pair's would be read.
    const files = dirname(this.config);
    const settings = (checkpoints: string) => `
http: { port: 0, host: 127.0.0.1, token: ${TOKEN} }
log: { level: ${process.env.CONVERGE_LOG_LEVEL ?? 'info'} }
checkpoints: { path: "${join(files, checkpoints)}" }
deadLetters: { path: "${join(files, 'dead-letters.jsonl')}" }
`;
    writeFileSync(this.config, `streams:${forward}${via}${reverse}${settings('checkpoints.json')}`);
    // Through NATS the publishing and the applying stream run in processes of their own (SplitRunner).
    const split = this.options.via && !this.options.inProcess && !this.options.twoWay;
    const runner = () => {
      if (this.options.inProcess) return new InProcessRunner(this.config);
      if (!split) return new CliRunner(this.config, this.options.env);
      const publisher = join(files, 'publisher.yaml');
      const applier = join(files, 'applier.yaml');
      writeFileSync(publisher, `streams:${forward}${settings('checkpoints.json')}`);
      writeFileSync(applier, `streams:${via}${settings('checkpoints-applier.json')}`);
      return new SplitRunner(new CliRunner(publisher, this.options.env), new CliRunner(applier, this.options.env));
    };
    const init = await runCliToEnd(['init-sql', '--config', this.config], this.options.env);
    if (init.code !== 0) throw new Error(`init-sql failed:\n${init.stderr}`);
    // Each part of the script names the database it runs on in its first line; a side takes the parts naming its URL.
    const parts = init.stdout.split(/^(?=-- stream ")/m).filter((p) => p.trim() !== '');
    // As init-sql writes it: without user and password (http URLs get their trailing slash).
    const urlOf = (yaml: string) => {
      const url = /url: "?([^",} ]+)/.exec(yaml)?.[1] ?? '\u0000';
      if (url.startsWith('sqlite:')) return url;
      const u = new URL(url);
      u.username = '';
      u.password = '';
      return u.toString();
    };
    const partsOf = (side: Side) => {
      const url = urlOf(side.source());
      return parts.filter((p) => [`(${url})`, `behind ${url} `].some((named) => p.split('\n', 1)[0]!.includes(named))).join('\n');
    };
    await this.a.setUp(partsOf(this.a));
    const forB = partsOf(this.b);
    if (forB) await this.b.setUp(forB);
    this.runner = runner();
    await this.runner.start();
  }

  async stop(): Promise<void> {
    await this.runner?.stop(true);
    this.runner = undefined;
    await this.a.close();
    await this.b.close();
  }

  /** Runs one history in a fresh key range; throws, with the history as readable steps, when the sides end wrong. */
  async run(steps: Step[]): Promise<void> {
    this.cases += 1;
    const base = this.cases * 1000;
    const letters = await this.inTurn(() => this.deadLetters());
    const touched = { a: 0, b: 0 };
    const existing: { side: 'a' | 'b'; change: UserChange }[] = [];
    try {
      for (const step of steps) {
        if ('settle' in step) await sleep(step.settle);
        else if ('fault' in step && step.fault === 'restart') await this.inTurn(() => this.restartDatabase());
        else if ('fault' in step && step.fault === 'outage') await this.inTurn(() => this.options.outage!());
        else if ('fault' in step) await this.inTurn(() => this.restartCdcSync());
        else if ('copy' in step && step.copy === 'live') {
          const source = step.stream === 'a-to-b' ? this.a : this.b;
          const where = step.table && typeof step.from === 'number' ? (source.idsBetween?.(base + step.from, base + SPAN) ?? `id >= ${base + step.from} AND id < ${base + SPAN}`) : undefined;
          await this.copyLiveUntilAsked(step.stream, step.table, where);
        }
        else if ('copy' in step) await this.inTurn(() => this.restartCdcSync(() => this.copyAtStart()));
        else if ('existing' in step) {
          const side = step.existing === 'a' ? this.a : this.b;
          const edits = step.parents.map((p): Edit => ({ kind: 'upsert-parent', id: p.id, values: p.values }));
          touched[step.existing] += await this.inTurn(() => retried(() => side.applyUntracked!(edits, base)));
          // No change log holds them: in the expected outcome they are older than any logged change, as the copy's rows are.
          existing.push(...step.parents.map((p, i) => ({ side: step.existing, change: { table: 'parent' as const, before: null, after: p.id, image: parentImage(p.id, p.values), time: -1, seq: -1 - i } })));
          await this.copyLiveUntilAsked(step.existing === 'a' ? 'a-to-b' : 'b-to-a', 'parent');
        }
        else touched[step.side] += await this.inTurn(() => retried(() => (step.side === 'a' ? this.a : this.b).apply(step.edits, base)));
      }
    } catch (error) {
      // A step itself failed (a command, a copy request): what cdc-sync logged meanwhile says why.
      throw new Error(`${(error as Error).message}\n\ncdc-sync's last log lines:\n${this.runner?.logs() ?? ''}`, { cause: error });
    }
    const { problems, keys } = await this.verify(base, touched, letters, existing);
    if (problems.length > 0) {
      const ids = [...new Set(keys.map((key) => base + Number(key.split(' ')[1])))];
      throw new Error(
        [
          problems.join('\n'),
          `history (ids relative to the case):\n${describeHistory(steps, this.runner?.fault)}`,
          `replay this history alone: ${replayCommand(this.options.name, steps)}`,
          `cdc-sync's log lines about the rows that differ (ids ${ids.join(', ')}):\n${this.runner?.about(ids) || '(none)'}`,
          `cdc-sync's last log lines:\n${this.runner?.logs() ?? ''}`,
        ].join('\n\n'),
      );
    }
  }

  private async verify(
    base: number,
    touched: { a: number; b: number },
    lettersBefore: number,
    existing: { side: 'a' | 'b'; change: UserChange }[] = [],
  ): Promise<{ problems: string[]; keys: string[] }> {
    const settled = await this.settle(base);
    const problems: string[] = [];
    if (!settled) problems.push(`the sides did not become equal within ${IDLE_TIMEOUT_MS} ms (${COPY_TIMEOUT_MS} ms while a copy ran)`);
    const [a, b] = await this.inTurn(async () => [await this.a.snapshot(base), await this.b.snapshot(base)]);
    const changes = await this.inTurn(async () => ({ a: await this.a.userChanges(base), b: await this.b.userChanges(base) }));
    for (const { side, change } of existing) changes[side].unshift(change);
    const expected = expectedState(changes.a, changes.b);
    const unequal = [...differences('a', a, 'b', b), ...differences('a', a, 'expected (the later change of each row wins; ties: a)', expected)];
    problems.push(...unequal.map((d) => d.text));
    const letters = (await this.inTurn(() => this.deadLetters())) - lettersBefore;
    if (letters > 0) {
      // With histories run side by side, a letter may be another one's: its key (in that history's range) says whose.
      const lines = await this.inTurn(async () => [...((await this.a.deadLetterLines?.()) ?? []), ...((await this.b.deadLetterLines?.()) ?? []), ...this.fileLetters().slice(-10)]);
      problems.push(`${letters} change(s) went to the dead letter (ids are absolute; this history's run from ${base}):\n${lines.map((l) => `  ${l}`).join('\n')}`);
    }
    // Each user edit is written once on its own side and at most once on the other (twice for a key change: delete + insert).
    const crossing = [...changes.a, ...changes.b].reduce((n, c) => n + (c.before !== null && c.after !== null && c.before !== c.after ? 2 : 1), 0);
    const written = await this.inTurn(async () => ({ a: await this.a.writes(base), b: await this.b.writes(base) }));
    const writes = written.a.length + written.b.length;
    const allowed = touched.a + touched.b + crossing;
    if (writes > allowed) problems.push(`${writes} row writes for ${touched.a + touched.b} user writes: at most ${allowed} expected (an echo or a write storm)`);
    if (writes > allowed || unequal.length > 0) {
      const focus = new Set(unequal.map((d) => d.key));
      problems.push(`writes by row (a's and b's) against changes the applications made (a's and b's):\n${writesByRow(written, changes, focus)}`);
    }
    return { problems, keys: unequal.map((d) => d.key) };
  }

  /**
   * Waits until both sides are equal and no side writes any more. A copy of
   * existing rows still running is work, not divergence: the wait goes on
   * while cdc-sync's status says a stream copies (the pair's tables hold the
   * rows of every history so far, and a copy at start reads them all), up to
   * COPY_TIMEOUT_MS.
   */
  private async settle(base: number): Promise<boolean> {
    let deadline = Date.now() + IDLE_TIMEOUT_MS;
    const last = Date.now() + COPY_TIMEOUT_MS;
    let previous = '';
    let stableSince = 0;
    let asked = 0;
    while (Date.now() < deadline) {
      if (Date.now() - asked > 1000) {
        asked = Date.now();
        if (await this.copying()) deadline = Math.min(last, Math.max(deadline, Date.now() + IDLE_TIMEOUT_MS));
      }
      const [a, b, writes] = await this.inTurn(async () => [await this.a.snapshot(base), await this.b.snapshot(base), `${(await this.a.writes(base)).length}|${(await this.b.writes(base)).length}`] as const);
      const state = `${JSON.stringify(sorted(a))}|${JSON.stringify(sorted(b))}|${writes}`;
      if (state !== previous) {
        previous = state;
        stableSince = Date.now();
      } else if (JSON.stringify(sorted(a)) === JSON.stringify(sorted(b)) && Date.now() - stableSince >= 600) {
        return true;
      }
      await sleep(100);
    }
    return false;
  }

  /** Whether a stream of the running process still copies existing rows (its status). */
  private async copying(): Promise<boolean> {
    try {
      const answer = await fetch(`${await this.runner!.url()}/api/sync/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const { streams } = (await answer.json()) as { streams: { copying: string[] }[] };
      return streams.some((s) => s.copying.length > 0);
    } catch {
      return false;
    }
  }

  /** Dead letters on both sides, and in the file of sinks that keep none in their target (supabase, nats). */
  private async deadLetters(): Promise<number> {
    return (await this.a.deadLetters()) + (await this.b.deadLetters()) + this.fileLetters().length;
  }

  private fileLetters(): string[] {
    const file = join(dirname(this.config), 'dead-letters.jsonl');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line) => `(file) ${line.slice(0, 300)}`);
  }

  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const mine = this.turn.then(work, work);
    this.turn = mine.catch(() => undefined);
    return mine;
  }

  private async restartCdcSync(meanwhile?: () => Promise<void>): Promise<void> {
    await this.runner!.stop(meanwhile !== undefined);
    this.a.cdcSyncKilled?.();
    this.b.cdcSyncKilled?.();
    // Started again whatever happened meanwhile: the other histories run on.
    try {
      await meanwhile?.();
    } finally {
      await this.runner!.start();
    }
  }

  /**
   * `cdc-sync snapshot` through the running process (its control API), asked
   * again while it answers 409 (the stream reopens: after a restart, a failure
   * or another copy request), as a user would. Each attempt takes its turn
   * alone; the waits between them do not, so other histories go on meanwhile.
   */
  private async copyLiveUntilAsked(stream: string, table: 'parent' | 'child' | null, where?: string): Promise<void> {
    const deadline = Date.now() + COPY_ASK_TIMEOUT_MS;
    for (;;) {
      const asked = await this.inTurn(() => this.copyLive(stream, table, where));
      if (asked === 'asked') return;
      if (Date.now() > deadline) throw new Error(`cdc-sync snapshot --stream ${stream}: still 409 after ${COPY_ASK_TIMEOUT_MS} ms: ${asked.busy}`);
      await sleep(250);
    }
  }

  private async copyLive(stream: string, table: 'parent' | 'child' | null, where?: string): Promise<'asked' | { busy: string }> {
    const url = await this.runner!.url();
    const args = ['snapshot', '--config', this.config, '--stream', stream, '--url', url, '--token', TOKEN, ...(table ? ['--table', table] : []), ...(where ? ['--where', where] : [])];
    const asked = await runCliToEnd(args, this.options.env);
    if (asked.code === 0) return 'asked';
    if (/answered 409/.test(asked.stderr)) return { busy: asked.stderr.trim() };
    throw new Error(`cdc-sync snapshot failed (${asked.code}):\n${asked.stderr}`);
  }

  /** With cdc-sync stopped: every stream that can copy copies all its tables at the next start. */
  private async copyAtStart(): Promise<void> {
    for (const stream of this.options.copies ?? []) {
      const asked = await runCliToEnd(['snapshot', '--config', this.config, '--stream', stream], this.options.env);
      if (asked.code !== 0) throw new Error(`cdc-sync snapshot (offline) failed (${asked.code}):\n${asked.stderr}`);
    }
  }

  /** The server crashes under cdc-sync, which must ride it out on its retries; the sides' own sessions connect again. */
  private async restartDatabase(): Promise<void> {
    if (!this.options.restartDatabase) throw new Error('this pair cannot restart its database');
    await this.options.restartDatabase();
    await this.a.reconnect?.();
    await this.b.reconnect?.();
  }

}

/** The final state the conflict rule promises: per row, the image of its latest change on either side (ties: a, the forward stream's source). */
export function expectedState(a: UserChange[], b: UserChange[]): Snapshot {
  const latest = new Map<string, { time: number; side: number; seq: number; image: Record<string, unknown> | null }>();
  const consider = (key: string, side: number, change: UserChange, image: Record<string, unknown> | null) => {
    const current = latest.get(key);
    const candidate = { time: change.time, side, seq: change.seq, image };
    if (!current || compare(candidate, current) > 0) latest.set(key, candidate);
  };
  for (const [side, changes] of [
    [1, a],
    [0, b],
  ] as const) {
    for (const change of changes) {
      if (change.before !== null && change.before !== change.after) consider(`${change.table} ${change.before}`, side, change, null);
      if (change.after !== null) consider(`${change.table} ${change.after}`, side, change, change.image);
    }
  }
  const state: Snapshot = {};
  for (const [key, { image }] of latest) if (image) state[key] = image;
  return state;
}

/**
 * Per row: how often each side wrote it, and how many of the applications' changes named it; the rows
 * written more often than their changes explain, and those in `focus` (the sides ended different), come
 * first, with each of their writes as the side logged it.
 */
function writesByRow(written: { a: Write[]; b: Write[] }, changes: { a: UserChange[]; b: UserChange[] }, focus: Set<string>): string {
  const rows = new Map<string, { a: number; b: number; byA: number; byB: number; log: string[] }>();
  const row = (key: string) => rows.get(key) ?? rows.set(key, { a: 0, b: 0, byA: 0, byB: 0, log: [] }).get(key)!;
  for (const side of ['a', 'b'] as const) {
    for (const w of written[side]) {
      row(w.row)[side] += 1;
      if (w.detail) row(w.row).log.push(`${side}: ${w.detail}`);
    }
  }
  for (const [side, list] of [['byA', changes.a], ['byB', changes.b]] as const) {
    for (const c of list) for (const id of new Set([c.before, c.after])) if (id !== null) row(`${c.table} ${id}`)[side] += 1;
  }
  const excess = (r: { a: number; b: number; byA: number; byB: number }) => r.a + r.b - 2 * (r.byA + r.byB);
  const shown = (key: string, r: { a: number; b: number; byA: number; byB: number }) => focus.has(key) || excess(r) > 0;
  return [...rows]
    .sort(([x, rx], [y, ry]) => Number(shown(y, ry)) - Number(shown(x, rx)) || excess(ry) - excess(rx) || (x < y ? -1 : 1))
    .map(([key, r]) => [`  ${key}: written ${r.a}/${r.b}, changed ${r.byA}/${r.byB}`, ...(shown(key, r) ? r.log.map((l) => `    ${l}`) : [])].join('\n'))
    .join('\n');
}

function compare(x: { time: number; side: number; seq: number }, y: { time: number; side: number; seq: number }): number {
  return x.time - y.time || x.side - y.side || x.seq - y.seq;
}

function differences(leftName: string, left: Snapshot, rightName: string, right: Snapshot): { key: string; text: string }[] {
  const keys = [...new Set([...Object.keys(left), ...Object.keys(right)])].sort();
  const out: { key: string; text: string }[] = [];
  for (const key of keys) {
    const [l, r] = [JSON.stringify(left[key] ?? null), JSON.stringify(right[key] ?? null)];
    if (l !== r) out.push({ key, text: `${key}: ${leftName} has ${l}, ${rightName} has ${r}` });
  }
  return out.slice(0, 12);
}

function sorted(state: Snapshot): [string, unknown][] {
  return Object.entries(state).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * An application retries a transaction that lost a deadlock or waited out a lock, as cdc-sync's writes can cause both,
 * and one whose key move met a row cdc-sync inserted meanwhile (`NOT EXISTS` saw the table before that insert committed:
 * a unique violation under READ COMMITTED); run again, it sees the row and moves nothing.
 */
async function retried<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= 5 || !['40P01', '40001', '23505', 'SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT'].includes(code ?? '')) throw error;
      await sleep(20 * attempt);
    }
  }
}
