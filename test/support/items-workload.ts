import { expect } from 'vitest';
import { metricValue } from './cli.js';
import type { TestDatabase } from './test-database.js';

/**
 * The change-log end-to-end workload on the clinic-style source tables:
 * 20 parents, 500 items, 71 edited (one a 14-digit price), 45 deleted, and
 * 455 updates of the excluded "RowVer" column only, which change nothing in
 * the target.
 */
export async function writeItemChanges(a: TestDatabase): Promise<void> {
  await a.query(`INSERT INTO "tblParents" SELECT g, 'parent ' || g FROM generate_series(1, 20) g`);
  await a.query(`INSERT INTO "tblItems" SELECT g, 1 + g % 20, 'item ' || g, g * 1.5 FROM generate_series(1, 500) g`);
  await a.query(`UPDATE "tblItems" SET "Name" = "Name" || ' (edited)', "Price" = 12345678901234.5678 WHERE "ItemID" % 7 = 0`);
  await a.query(`DELETE FROM "tblItems" WHERE "ItemID" % 11 = 0`);
  await a.query(`UPDATE "tblItems" SET "RowVer" = "RowVer" + 1`); // excluded column only: nothing to apply
}

/** The counters `writeItemChanges` leaves on a stream once everything is read. */
export function expectItemCounters(text: string, stream: string): void {
  const labels = { stream, table: 'public.tblItems' };
  expect(metricValue(text, 'cdc_sync_events_applied_total', { ...labels, op: 'insert' })).toBe(500);
  expect(metricValue(text, 'cdc_sync_events_applied_total', { ...labels, op: 'delete' })).toBe(45);
  expect(metricValue(text, 'cdc_sync_events_suppressed_total', { ...labels, reason: 'no-op' })).toBe(455);
  expect(metricValue(text, 'cdc_sync_events_failed_total', { ...labels, reason: 'constraint' })).toBe(0);
  expect(metricValue(text, 'cdc_sync_connected', { stream })).toBe(1);
}
