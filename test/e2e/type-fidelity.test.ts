import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runCliToEnd, waitFor, writeConfig, CliProcesses } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * Every column type a PostgreSQL table may have reaches a PostgreSQL target
 * exactly: the row's text output (`t::text`, each value through its type's
 * output function) is the same on both sides, for inserts (COPY), updates
 * (upserts) and deletes, through the change log and through the WAL.
 * Edge values throughout: extremes, NaN and infinities, -0, text with tabs,
 * newlines, backslashes, quotes and characters outside the BMP, JSON whose
 * text a json column keeps as written (spaces, duplicate keys), jsonb
 * numbers with trailing zeros and more digits than a double holds, a jsonb
 * string that reads as JSON, arrays with NULLs and quotes.
 */
const TYPES = `
  CREATE EXTENSION IF NOT EXISTS citext;
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy, really');
  CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 50);
  CREATE TYPE pair AS (label text, amount numeric);
  CREATE TABLE kinds (
    id bigint PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, num numeric, num_s numeric(30,10), f4 real, f8 double precision,
    flag boolean, t text, vc varchar(20), ch char(5), bin bytea,
    ts timestamp, tstz timestamptz, d date, tm time, tmtz timetz, iv interval,
    u uuid, j json, jb jsonb, ai integer[], at text[], grid integer[][],
    m mood, net inet, block cidr, mac macaddr, cash money, bits bit varying(16), doc tsvector, x xml,
    pt point, span int4range, st short_text, pr pair, cit citext
  );`;

/** One row per line: the values of every column but id, as SQL literals. Edge values first, then plain ones. */
const ROWS = [
  `-32768, -2147483648, -9223372036854775808, 'NaN', -99999999999999999999.9999999999, '-Infinity', '-Infinity',
   false, E'tab\\there\\nnew line\\\\ back \\\\N quote '' "dq"', '', '', '\\x00ff10', '-infinity', '-infinity', '4713-01-01 BC', '00:00', '00:00+14', '-178000000 years',
   '00000000-0000-0000-0000-000000000000', '{ "b" : 2, "a":[1, 2.50,"x"], "b": 3 }', '{"n": 2.50, "big": 123456789012345678901234567890.000, "s": "\\u00e9\\ud83d\\ude00", "t": "tab\\there"}',
   '{}', '{NULL, "", "a,b", "q\\"uote", "back\\\\slash", "NULL"}', '{{1,2},{3,NULL}}',
   'happy, really', '::1', '10.0.0.0/8', '08:00:2b:01:02:03', '-92233720368547758.08', B'', 'a:1 b:2,3', '<a x="1">&amp;</a>',
   '(-0,1e-300)', 'empty', '', '("",)', 'Straße'`,
  `32767, 2147483647, 9223372036854775807, 'Infinity', 99999999999999999999.9999999999, 'NaN', 'NaN',
   true, E'emoji \\U0001F600 and é and \\u4e2d', 'twenty characters!!!', 'abc', '', 'infinity', 'infinity', '5874897-12-31', '24:00', '23:59:59.999999-15:59', '1 mon -2 days 03:04:05.678901',
   'ffffffff-ffff-ffff-ffff-ffffffffffff', '[]', '[null, true, {"": ""}, -0.0000000000000000000001000]', '{1,NULL,-3}', '{}', '{}',
   'sad', '2001:db8::ff00:42:8329/64', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '92233720368547758.07', B'1010101010101010', '', '<?xml version="1.0"?><r/>',
   '(1.5,-2.25)', '[1,10)', 'x', '(label,1.5)', ''`,
  `0, 0, 0, 0, 0, '-0', '-0', NULL, ' ', NULL, ' x ', '\\x', '2000-01-01 00:00:00.000001', '1970-01-01 00:00:00+00', '2000-02-29', '12:34:56.789', '12:00-03:30', '0 seconds',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '"just a string"', '"1.0"', '{}', '{"{}", "}{"}', NULL,
   'ok', '192.168.0.1/24', '192.168.0.0/24', '00:00:00:00:00:00', '0', B'0', '''quoted'' word', NULL,
   '(0,0)', '(,)', NULL, NULL, 'mixed Case'`,
  `1, 2, 3, 1e-40, 0.0000000001, 1.17549435e-38, 4.9e-324, true, 'plain', 'plain', 'plain', '\\xdeadbeef', '2026-12-05 11:25:00.5', '2026-12-05 11:25:00.5+01', '2026-12-05', '11:25', '11:25+01', '1 day',
   '123e4567-e89b-12d3-a456-426614174000', '1.50', '-2.000', '{1}', '{plain}', '{{1}}',
   'ok', '10.1.2.3', '10.1.2.0/24', '01:02:03:04:05:06', '12.34', B'1', 'plain', '<p>plain</p>', '(1,2)', '[1,2]', 'plain', '(plain,2)', NULL`,
];
const COLUMNS = 'i2, i4, i8, num, num_s, f4, f8, flag, t, vc, ch, bin, ts, tstz, d, tm, tmtz, iv, u, j, jb, ai, at, grid, m, net, block, mac, cash, bits, doc, x, pt, span, st, pr, cit';

const processes = new CliProcesses();
let a: TestDatabase;
let b: TestDatabase;

/**
 * Each row as the output of each of its columns: format's %s calls the type's output function, which `::text` does
 * not for every type (xml's cast keeps a declaration its output leaves out; char(n)'s trims the padding).
 */
async function rows(db: TestDatabase): Promise<Record<string, string | null>[]> {
  const columns = COLUMNS.split(', ').map((c) => `CASE WHEN ${c} IS NULL THEN NULL ELSE format('%s', ${c}) END AS ${c}`);
  return db.query<Record<string, string | null>>(`SELECT id::text, ${columns.join(', ')} FROM kinds ORDER BY id`);
}

let lastDifference = '';
async function equal(): Promise<boolean> {
  const [left, right] = [await rows(a), await rows(b)];
  const differences: string[] = [];
  for (const row of left) {
    const other = right.find((r) => r.id === row.id);
    if (!other) differences.push(`row ${row.id}: missing on B`);
    else for (const column of Object.keys(row)) if (row[column] !== other[column]) differences.push(`row ${row.id} ${column}: A ${JSON.stringify(row[column])}, B ${JSON.stringify(other[column])}`);
  }
  if (right.length !== left.length) differences.push(`A ${left.length} rows, B ${right.length}`);
  lastDifference = differences.join('\n');
  return differences.length === 0;
}

async function writeHistory(): Promise<void> {
  // Inserts (COPY on the target), each edge row several times under other ids.
  for (const [i, values] of ROWS.entries()) await a.query(`INSERT INTO kinds (id, ${COLUMNS}) VALUES (${i + 1}, ${values}), (${i + 11}, ${values}), (${i + 21}, ${values})`);
  // Updates (upserts): rows take another row's values, so every value is also written over another.
  await a.query(`UPDATE kinds AS t SET (${COLUMNS}) = (SELECT ${COLUMNS} FROM kinds s WHERE s.id = 1 + (t.id % 4)) WHERE t.id > 10 AND t.id <= 20`);
  await a.query(`DELETE FROM kinds WHERE id > 22`);
  // Values equal to the stored ones by their type's equality but written otherwise: an upsert that skipped them as
  // unchanged would leave the old text on the target (0 → -0, '0' → '-1 days +24:00:00', 'x' → 'X').
  await a.query(`UPDATE kinds SET f8 = f8 * -1, iv = iv + interval '24 hours' - interval '1 day', cit = upper(cit) WHERE id IN (3, 13)`);
}

beforeAll(async () => {
  a = await createTestDatabase('types_a');
  b = await createTestDatabase('types_b');
  await a.query(TYPES);
  await b.query(TYPES);
});

afterEach(async () => {
  await processes.killAll();
  await a.query(`TRUNCATE kinds`);
  await b.query(`TRUNCATE kinds`);
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

describe('every PostgreSQL column type reaches a PostgreSQL target exactly', () => {
  it.each([
    ['postgres-changelog', 'idleIntervalMs: 50'],
    ['postgres-wal', 'slot: cdc_sync_types, publication: cdc_sync_types'],
  ])('%s → postgres: inserts, updates and deletes of edge values', async (type, options) => {
    const config = writeConfig(`
streams:
  - name: types-${type}
    source: { type: ${type}, url: "\${SOURCE_URL}", snapshot: never, ${options} }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: public.kinds, target: public.kinds }
    batch: { maxWaitMs: 20 }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
    const env = { SOURCE_URL: a.url, SINK_URL: b.url };
    if (type === 'postgres-changelog') {
      const init = await runCliToEnd(['init-sql', '--config', config], env);
      expect(init.code).toBe(0);
      await a.query(init.stdout);
    }
    const cli = processes.add(runCli(['run', '--config', config], env));
    await waitFor(() => cli.logs.some((l) => l.msg === 'stream started' || l.msg === 'logical replication started'), 30_000, () => cli.stderr());
    if (type === 'postgres-wal') await waitFor(() => cli.logs.some((l) => l.msg === 'logical replication started'), 30_000, () => cli.stderr());
    await writeHistory();
    expect((await rows(a)).length).toBe(10);
    expect(await a.query(`SELECT jb->>'big' AS big, j::text AS j FROM kinds WHERE id = 1`)).toEqual([
      { big: '123456789012345678901234567890.000', j: '{ "b" : 2, "a":[1, 2.50,"x"], "b": 3 }' },
    ]);
    await waitFor(() => equal(), 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    // A JSON null in a json or jsonb column, by an update (upsert) and an insert (COPY). The WAL sends it as
    // written; the change log's row image (row_to_json) writes it as it writes SQL NULL, so it arrives as NULL.
    await a.query(`UPDATE kinds SET j = 'null', jb = 'null' WHERE id = 2`);
    await a.query(`INSERT INTO kinds (id, j, jb) VALUES (40, 'null', 'null')`);
    if (type === 'postgres-wal') await waitFor(() => equal(), 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    else {
      const nulls = () => b.query<{ id: string; j: string | null; jb: string | null }>(`SELECT id::text, j::text, jb::text FROM kinds WHERE id IN (2, 40) ORDER BY id`);
      await waitFor(async () => (await nulls()).length === 2 && (await nulls()).every((r) => r.j === null && r.jb === null), 30_000, () => cli.stderr());
    }
    expect(await b.query(`SELECT count(*)::int AS n FROM cdc_sync.dead_letters`)).toEqual([{ n: 0 }]);
    if (type === 'postgres-wal') {
      await processes.killAll();
      await a.query(`SELECT pg_drop_replication_slot('cdc_sync_types')`);
    }
  });
});
