import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { DEMO_TABLES } from './schema.js';

export interface DemoPaths {
  dir: string;
  clinic: string;
  portal: string;
}

export function demoPaths(dir: string): DemoPaths {
  return { dir, clinic: join(dir, 'clinic.sqlite'), portal: join(dir, 'portal') };
}

/**
 * Both directions of the clinic, on the embedded stand-ins: the clinic's
 * six tables to the portal, and the doctors' notes and aligner days back,
 * owned by the portal (the clinic keeps everything else of those rows).
 */
export function demoConfig(paths: DemoPaths, port: number, host = '127.0.0.1'): Config {
  const forward = DEMO_TABLES.map((t) => `      - { source: ${t.clinic}, target: public.${t.portal} }`).join('\n');
  return parseConfig(
    `
streams:
  - name: clinic-to-cloud
    direction: forward
    source: { type: sqlite-changelog, url: ${JSON.stringify(paths.clinic)}, idleIntervalMs: 200 }
    sink: { type: postgres, url: ${JSON.stringify(`pglite:${paths.portal}`)} }
    tables:
${forward}
    batch: { maxSize: 500, maxWaitMs: 50 }
  - name: cloud-to-clinic
    direction: reverse
    source: { type: postgres-changelog, url: ${JSON.stringify(`pglite:${paths.portal}`)}, idleIntervalMs: 200 }
    sink: { type: sqlite, url: ${JSON.stringify(paths.clinic)} }
    tables:
      - { source: public.aligner_batches, target: tblAlignerBatches, owns: [days, updated_at] }
      - { source: public.aligner_notes, target: tblAlignerNotes, owns: [note_text, updated_at] }
    batch: { maxSize: 500, maxWaitMs: 50 }
checkpoints: { store: auto }
http: { port: ${port}, host: "${host}" }
log: { level: warn }
`,
    {},
    'the demo configuration',
  );
}
