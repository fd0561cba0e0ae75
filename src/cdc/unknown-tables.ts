import type { StreamContext } from '../streams/context.js';

/**
 * Changes in a shared change log of tables the stream does not capture (a
 * capture trigger left from an earlier configuration, another stream's
 * table): dropped, but counted (`events_suppressed_total{reason=
 * "unknown-table"}`) and logged once per table name, so nothing is passed
 * over unseen.
 */
export class UnknownTables {
  private readonly logged = new Set<string>();

  constructor(private readonly captured: (table: string) => boolean) {}

  /** The rows of captured tables; the others counted and, the first time, logged. */
  drop<R extends { table_name: string }>(rows: R[], context: StreamContext): R[] {
    let kept = rows;
    for (const row of rows) {
      if (this.captured(row.table_name)) continue;
      if (kept === rows) kept = rows.filter((r) => this.captured(r.table_name));
      this.skipped(row.table_name, context);
    }
    return kept;
  }

  /** One change of `table`, which the stream does not capture, skipped. */
  skipped(table: string, context: StreamContext): void {
    context.metrics.suppressed.inc({ stream: context.stream, direction: context.direction, table, reason: 'unknown-table' });
    if (this.logged.has(table)) return;
    this.logged.add(table);
    context.log.warn({ table }, 'the source holds changes of a table this stream does not capture; they are skipped (remove its capture trigger or publication entry, or add the table to the stream)');
  }
}
