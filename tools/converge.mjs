#!/usr/bin/env node
// `npm run converge -- [--runs N] [--seed S] [--pair NAME]`: the convergence checker
// (test/converge) for as many random histories as asked, or one seed replayed.
// Runs through vitest because the checker uses the suite's private PostgreSQL cluster.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    pair: { type: 'string' },
  },
});
const env = { ...process.env, CONVERGE_RUNS: values.runs };
if (values.seed !== undefined) env.CONVERGE_SEED = values.seed;
if (values.pair !== undefined) env.CONVERGE_PAIR = values.pair;
const result = spawnSync('npx', ['vitest', 'run', 'test/converge', '--reporter=verbose'], { stdio: 'inherit', env });
process.exit(result.status ?? 1);
