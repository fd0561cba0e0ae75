import fc from 'fast-check';

/**
 * Random histories for the convergence checker. Keys are small numbers
 * (offsets inside a case's own key range), so edits of both sides meet on
 * the same rows. The schema (see sides.ts):
 *   parent(id, name, qty, at, flag, data, doc) — ids 0–5 are free (deleted, moved),
 *     ids 10–13 are anchors: children point at them, so they are never
 *     deleted or moved (two sides could not agree on a child whose parent one
 *     of them deleted concurrently without cascades);
 *   child(id, parent_id → parent, note) — ids 100 and up.
 */
export const FREE_PARENTS = [0, 1, 2, 3, 4, 5];
export const ANCHORS = [10, 11, 12, 13];
export const CHILD_BASE = 100;
/** Parents that exist before capture (written with capture off, then copied): no other step touches them. */
export const EXISTING_PARENTS = [20, 21, 22, 23];

export interface ParentValues {
  name: string | null;
  qty: number | null;
  /** Milliseconds since the epoch (timestamp(3) / SQLite text). */
  at: number | null;
  flag: boolean | null;
  data: Uint8Array | null;
  /** JSON text as PostgreSQL's jsonb writes it (see `doc`), so every side holds the same text. */
  doc: string | null;
}

export type Edit =
  /** INSERT … ON CONFLICT DO UPDATE: a new row, or a re-insert of a deleted key. */
  | { kind: 'upsert-parent'; id: number; values: ParentValues }
  | { kind: 'update-parent'; id: number; name: string | null; qty: number | null }
  | { kind: 'delete-parent'; id: number }
  /** A primary-key change, when `to` is free on this side. */
  | { kind: 'move-parent'; from: number; to: number }
  /** Children inserted before their (anchor) parent, in one transaction. */
  | { kind: 'family'; parent: number; name: string; children: number[] }
  | { kind: 'update-child'; id: number; note: string | null; parent: number }
  | { kind: 'delete-child'; id: number }
  | { kind: 'move-child'; from: number; to: number };

export type Step =
  | { side: 'a' | 'b'; edits: Edit[] }
  /**
   * kill: SIGKILL of cdc-sync, then a new process from the checkpoints;
   * restart: the PostgreSQL server crashes and starts again;
   * outage: Realtime loses its connections and every change for a moment.
   */
  | { fault: 'kill' | 'restart' | 'outage' }
  /**
   * A copy of existing rows: `live`, asked of the running process through
   * its control API (`cdc-sync snapshot`), of one table or all; at start,
   * cdc-sync is stopped, every stream that can copy is set to copy all its
   * tables at its next start (`cdc-sync snapshot` offline), and started.
   * `from`: a copy of one table limited by `--where` to the case's ids from
   * this one up (in the source's own condition syntax).
   */
  | { copy: 'live'; stream: string; table: 'parent' | 'child' | null; from?: number | null }
  | { copy: 'at-start' }
  /** Time for changes to cross before the next step. */
  | { settle: number }
  /**
   * Rows that exist before capture: written on one side with its capture
   * off (cdc-sync's own origin marker), so no change log holds them, then
   * copied by that side's stream (`cdc-sync snapshot --table parent` to the
   * running process). Only a copy can bring them across.
   */
  | { existing: 'a' | 'b'; parents: { id: number; values: ParentValues }[] };

const text = fc.oneof(
  fc.constantFrom('', ' ', "it's", 'a"b', 'back\\slash', 'tab\there', 'ünïcødé ✓', '𝄞 music'),
  fc.string({ maxLength: 12 }).map((s) => s.replace(/\u0000/g, '')),
);
const nullable = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null, freq: 4 });
const qty = fc.oneof(fc.constantFrom(0, -1, 1, 2 ** 31 - 1, -(2 ** 31), Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER), fc.integer());
// timestamp(3) between 1900 and 2200, whole milliseconds.
const at = fc.oneof(fc.constantFrom(0, -2208988800000, 946684799999, 7258118400000), fc.integer({ min: -2208988800000, max: 7258118400000 }));
const bytes = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 8 }));

/**
 * A JSON number as numeric writes it: decimals with their trailing zeros,
 * more digits than a double holds, no exponent and no negative zero
 * (https://www.postgresql.org/docs/current/datatype-json.html: jsonb keeps
 * a number as numeric).
 */
const jsonNumber = fc
  .tuple(fc.boolean(), fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,29}$/)), fc.option(fc.stringMatching(/^[0-9]{1,6}$/), { nil: undefined }))
  .map(([minus, int, frac]) => {
    const digits = `${int}${frac === undefined ? '' : `.${frac}`}`;
    return minus && /[1-9]/.test(digits) ? `-${digits}` : digits;
  });
const jsonString = fc.oneof(fc.constantFrom('1.0', 'true', 'null', '{"a": 1}', '', 'tab\tq"uote\\', 'é 😀', '12345678901234567890'), fc.string({ maxLength: 6 }).map((s) => s.replace(/\u0000/g, '')));
type Json = { number: string } | string | boolean | null | Json[] | { object: [string, Json][] };
/** jsonb's key order: shorter keys first, then by their bytes (src/backend/utils/adt/jsonb_util.c, lengthCompareJsonbString). */
const jsonbKeyOrder = (a: string, b: string) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b));
const jsonValue: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 3 },
    jsonNumber.map((number) => ({ number })),
    jsonString,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.uniqueArray(fc.tuple(fc.oneof(fc.constantFrom('a', 'bb', 'é', 'n'), fc.string({ maxLength: 3 }).map((s) => s.replace(/\u0000/g, ''))), tie('value')), { maxLength: 3, selector: ([k]) => k })
      .map((entries) => ({ object: entries.sort(([a], [b]) => jsonbKeyOrder(a, b)) })),
  ),
})).value;
/** The text jsonb's output function writes: `, ` between items, `: ` after keys, strings escaped as JSON.stringify escapes them. */
function jsonbText(value: Json): string {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(', ')}]`;
  if ('number' in value) return value.number;
  return `{${value.object.map(([k, v]) => `${JSON.stringify(k)}: ${jsonbText(v)}`).join(', ')}}`;
}
// A JSON null as the whole value is left out: the change-log row image writes it as it writes SQL NULL (README).
const doc = jsonValue.filter((v) => v !== null).map(jsonbText);

const values: fc.Arbitrary<ParentValues> = fc.record({
  name: nullable(text),
  qty: nullable(qty),
  at: nullable(at),
  flag: nullable(fc.boolean()),
  data: nullable(bytes),
  doc: nullable(doc),
});

const freeParent = fc.constantFrom(...FREE_PARENTS);
const anyParent = fc.constantFrom(...FREE_PARENTS, ...ANCHORS);
const anchor = fc.constantFrom(...ANCHORS);
const child = (span: number) => fc.integer({ min: CHILD_BASE, max: CHILD_BASE + span - 1 });

function edit(span: number): fc.Arbitrary<Edit> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('upsert-parent' as const), id: freeParent, values }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('update-parent' as const), id: anyParent, name: nullable(text), qty: nullable(qty) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete-parent' as const), id: freeParent }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('move-parent' as const), from: freeParent, to: freeParent }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('family' as const),
        parent: anchor,
        name: text,
        // Up to 40 children: more than the checker's batch.maxSize (16), so a transaction spans batches.
        children: fc.uniqueArray(child(span), { minLength: 1, maxLength: 40 }),
      }),
    },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('update-child' as const), id: child(span), note: nullable(text), parent: anchor }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete-child' as const), id: child(span) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('move-child' as const), from: child(span), to: child(span) }) },
  );
}

/**
 * A history; `sides` lists who may edit (one-way pairs: only `a`); `restarts`: the pair can restart its database server;
 * `copies`: the streams whose source can copy existing rows; `copiesAtStart`: cdc-sync can be set to copy offline (not with
 * an embedded database the test process holds).
 */
export function history(options: {
  sides: ('a' | 'b')[];
  kills: boolean;
  restarts?: boolean;
  outages?: boolean;
  copies?: string[];
  copiesAtStart?: boolean;
  /** Sides that can hold rows no change log saw (and whose stream can copy them): a history may start with some. */
  existing?: ('a' | 'b')[];
  maxSteps?: number;
}): fc.Arbitrary<Step[]> {
  const span = 64;
  const sideStep = fc.record({ side: fc.constantFrom(...options.sides), edits: fc.array(edit(span), { minLength: 1, maxLength: 4 }) });
  const steps: fc.Arbitrary<Step>[] = [sideStep, sideStep, sideStep, sideStep, fc.record({ settle: fc.constantFrom(0, 50, 200) })];
  if (options.kills) steps.push(fc.constant({ fault: 'kill' as const }));
  if (options.restarts) steps.push(fc.constant({ fault: 'restart' as const }));
  if (options.outages) steps.push(fc.constant({ fault: 'outage' as const }));
  if (options.copies?.length) {
    const stream = fc.constantFrom(...options.copies);
    steps.push(fc.record({ copy: fc.constant('live' as const), stream, table: fc.constantFrom('parent' as const, 'child' as const, null), from: fc.oneof(fc.constant(null), fc.constantFrom(0, 3, 8, 120)) }));
    if (options.copiesAtStart) steps.push(fc.constant({ copy: 'at-start' as const }));
  }
  const rest = fc.array(fc.oneof(...steps), { minLength: 1, maxLength: options.maxSteps ?? 12 });
  if (!options.existing?.length) return rest;
  const existing = fc.record({
    existing: fc.constantFrom(...options.existing),
    parents: fc.uniqueArray(fc.record({ id: fc.constantFrom(...EXISTING_PARENTS), values }), { minLength: 1, maxLength: EXISTING_PARENTS.length, selector: (p) => p.id }),
  });
  // At the start of a history, as a user starts from tables that already hold rows.
  return fc.tuple(fc.option(existing, { nil: null, freq: 3 }), rest).map(([first, steps]) => (first ? [first, ...steps] : steps));
}

/** The history as JSON (bytes as `{"hex": …}`), for CONVERGE_HISTORY. */
export function historyJson(steps: Step[]): string {
  return JSON.stringify(steps, (_, x: unknown) => (x instanceof Uint8Array ? { hex: Buffer.from(x).toString('hex') } : x));
}

export function parseHistory(json: string): Step[] {
  return JSON.parse(json, (_, x: unknown) => (x !== null && typeof x === 'object' && 'hex' in x && typeof x.hex === 'string' ? new Uint8Array(Buffer.from(x.hex, 'hex')) : x)) as Step[];
}

/** The command that runs exactly this history against the pair. */
export function replayCommand(pair: string, steps: Step[]): string {
  return `npm run converge -- --pair '${pair}' --history '${historyJson(steps)}'`;
}

/** The history as lines a person can read and replay; `fault` says what a kill step does. */
export function describeHistory(steps: Step[], fault = 'kill -9 cdc-sync, start it again'): string {
  return steps
    .map((step, i) => {
      if ('fault' in step && step.fault === 'restart') return `${i + 1}. crash the PostgreSQL server (pg_ctl stop -m immediate), start it again`;
      if ('fault' in step && step.fault === 'outage') return `${i + 1}. an outage for 300 ms (Realtime drops every connection and loses every change; NATS: one of its three nodes is killed)`;
      if ('fault' in step) return `${i + 1}. ${fault}`;
      if ('copy' in step && step.copy === 'live') {
        const where = step.table && typeof step.from === 'number' ? ` --where <ids from ${step.from} up>` : '';
        return `${i + 1}. cdc-sync snapshot --stream ${step.stream}${step.table ? ` --table ${step.table}` : ''}${where} (the running process copies while it streams)`;
      }
      if ('copy' in step) return `${i + 1}. stop cdc-sync; cdc-sync snapshot --stream <each> (offline: every table copied at the next start); start it again`;
      if ('settle' in step) return `${i + 1}. wait ${step.settle} ms`;
      if ('existing' in step) {
        const stream = step.existing === 'a' ? 'a-to-b' : 'b-to-a';
        const rows = step.parents.map((p) => describeEdit({ kind: 'upsert-parent', id: p.id, values: p.values })).join('; ');
        return `${i + 1}. rows that exist before capture, on ${step.existing} (written with its capture off): ${rows}; then cdc-sync snapshot --stream ${stream} --table parent`;
      }
      return `${i + 1}. on ${step.side}, one transaction: ${step.edits.map(describeEdit).join('; ')}`;
    })
    .join('\n');
}

function describeEdit(edit: Edit): string {
  const json = (v: unknown) => JSON.stringify(v, (_, x: unknown) => (x instanceof Uint8Array ? `\\x${Buffer.from(x).toString('hex')}` : x));
  switch (edit.kind) {
    case 'upsert-parent':
      return `upsert parent ${edit.id} ${json(edit.values)}`;
    case 'update-parent':
      return `update parent ${edit.id} set name=${json(edit.name)}, qty=${json(edit.qty)}`;
    case 'delete-parent':
      return `delete parent ${edit.id} (if no child points at it)`;
    case 'move-parent':
      return `change parent key ${edit.from} → ${edit.to}`;
    case 'family':
      return `insert children ${edit.children.join(',')} of parent ${edit.parent}, then the parent (${json(edit.name)})`;
    case 'update-child':
      return `update child ${edit.id} set note=${json(edit.note)}, parent_id=${edit.parent}`;
    case 'delete-child':
      return `delete child ${edit.id}`;
    case 'move-child':
      return `change child key ${edit.from} → ${edit.to}`;
  }
}
