import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { history } from './history.js';
import { Pair } from './pair.js';
import { PostgresSide, SqliteSide, type Side } from './sides.js';

/**
 * The convergence checker: random histories of edits on both sides (inserts,
 * updates, deletes, key changes, re-inserts, children before parents in one
 * transaction, transactions larger than batch.maxSize, the same row edited
 * on both sides, NULLs and edge values) with cdc-sync killed (-9) and
 * restarted between steps. After each history: both sides equal, equal to
 * what the conflict rule says should win, no dead letter, no echo. A failure
 * shrinks to a minimal history and prints it with its seed.
 *
 * CONVERGE_RUNS (default 12) cases per pair; CONVERGE_SEED replays one run;
 * CONVERGE_PAIR picks one pair. `npm run converge -- --runs N --seed S --pair P`.
 */
const RUNS = Number(process.env.CONVERGE_RUNS ?? 12);
const SEED = process.env.CONVERGE_SEED === undefined ? undefined : Number(process.env.CONVERGE_SEED);
const ONLY = process.env.CONVERGE_PAIR;

interface PairSpec {
  name: string;
  twoWay: boolean;
  sides: () => Promise<[Side, Side]>;
}

const PAIRS: PairSpec[] = [
  { name: 'postgres-changelog ⇄ postgres', twoWay: true, sides: async () => [await PostgresSide.create('a'), await PostgresSide.create('b')] },
  { name: 'sqlite-changelog ⇄ postgres', twoWay: true, sides: async () => [SqliteSide.create('a'), await PostgresSide.create('b')] },
  { name: 'postgres-wal → postgres', twoWay: false, sides: async () => [await PostgresSide.create('a', { wal: true }), await PostgresSide.create('b')] },
];

for (const spec of PAIRS.filter((p) => !ONLY || p.name.startsWith(ONLY))) {
  describe(`convergence: ${spec.name}`, () => {
    let pair: Pair;

    beforeAll(async () => {
      const [a, b] = await spec.sides();
      pair = new Pair(a, b, { twoWay: spec.twoWay });
      await pair.start();
    }, 60_000);

    afterAll(async () => {
      await pair?.stop();
    });

    it('ends with both sides equal to the winning edits, no dead letter and no echo, for random histories with kills', async () => {
      await fc.assert(
        fc.asyncProperty(history({ sides: spec.twoWay ? ['a', 'b'] : ['a'], kills: true }), (steps) => pair.run(steps)),
        { numRuns: RUNS, seed: SEED, endOnFailure: false, interruptAfterTimeLimit: 20 * 60_000 },
      );
    }, 30 * 60_000);
  });
}
