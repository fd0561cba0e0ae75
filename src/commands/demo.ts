import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { initSql } from './init-sql.js';
import { EXIT_OK, runConfig } from './run.js';
import { demoConfig, demoPaths } from '../demo/demo-config.js';
import { showProgress } from '../demo/progress.js';
import { CLINIC_SCHEMA, PORTAL_SCHEMA } from '../demo/schema.js';
import { DemoWriter } from '../demo/writer.js';
import { createPool } from '../db/postgres/connection.js';
import { openSqlite } from '../db/sqlite/connection.js';
import { compareSides } from '../demo/compare.js';

/**
 * `cdc-sync demo` (and `npm start`): the complete two-way sync with nothing
 * to install. A SQLite file stands in for the clinic's SQL Server, an
 * embedded PGlite for the portal's Supabase, both under ./data/demo; a
 * writer changes both sides; a line shows the flow; /metrics is served.
 * Ctrl-C stops it cleanly and says whether both sides agree.
 */
export async function demoCommand(options: { dir?: string; port?: number; host?: string }): Promise<number> {
  const paths = demoPaths(resolve(options.dir ?? './data/demo'));
  mkdirSync(paths.dir, { recursive: true });
  const config = demoConfig(paths, options.port ?? 9464, options.host);

  const clinic = openSqlite(paths.clinic, 'demo clinic database');
  const portal = createPool(`pglite:${paths.portal}`);
  clinic.exec(CLINIC_SCHEMA);
  await portal.query(PORTAL_SCHEMA);
  // The capture set-up is the same script `cdc-sync init-sql` prints: one part per source database.
  const [forClinic, forPortal] = initSql(config).split(/^-- stream "cloud-to-clinic".*$/m);
  clinic.exec(forClinic!);
  await portal.query(forPortal!);
  const writer = new DemoWriter(clinic, portal);
  writer.seed();

  process.stdout.write(`cdc-sync demo: clinic ${paths.clinic} (SQLite) ⇄ portal ${paths.portal} (PGlite). Ctrl-C stops.\n`);
  let stopProgress: (() => Promise<void>) | undefined;
  const code = await runConfig(config, {
    started: ({ metrics, port }) => {
      process.stdout.write(`metrics: http://127.0.0.1:${port}/metrics\n`);
      writer.start();
      stopProgress = showProgress(metrics);
    },
    // Stop writing, then let the streams carry the last changes before they stop.
    beforeStop: async () => {
      await writer.stop();
      process.stdout.write('\nstopping: waiting for the last changes to arrive…\n');
      const deadline = Date.now() + 15_000;
      while (!(await compareSides(clinic, portal)).equal && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    },
  });
  await stopProgress?.();
  const agree = await compareSides(clinic, portal);
  process.stdout.write(agree.equal ? 'both sides agree\n' : `the sides differ: ${agree.detail}\n`);
  clinic.close();
  await portal.end();
  return code === EXIT_OK && !agree.equal ? 1 : code;
}
