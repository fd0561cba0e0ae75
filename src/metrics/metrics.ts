import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FAILURE_REASONS } from '../core/errors.js';

/** Metric names of DESIGN.md, in one place. Labels never carry a key or a value. */
export const PREFIX = 'cdc_sync_';
export const OPS = ['insert', 'update', 'delete'] as const;
export const SUPPRESS_REASONS = ['no-op', 'origin', 'duplicate', 'stale', 'unknown-table'] as const;
export type SuppressReason = (typeof SUPPRESS_REASONS)[number];

const STREAM = ['stream', 'direction'] as const;
const TABLE_OP = ['stream', 'direction', 'table', 'op'] as const;
const TABLE_REASON = ['stream', 'direction', 'table', 'reason'] as const;

export function createMetrics(registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
  if (options.defaultMetrics) {
    collectDefaultMetrics({ register: registry, prefix: PREFIX });
    // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool check metrics).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      registry.removeSingleMetric(PREFIX + name);
    }
  }
  const registers = [registry];
  return {
    registry,
    captured: new Counter({ name: `${PREFIX}events_captured_total`, help: 'Changes read from the source.', labelNames: TABLE_OP, registers }),
    applied: new Counter({ name: `${PREFIX}events_applied_total`, help: 'Changes committed to the sink.', labelNames: TABLE_OP, registers }),
    failed: new Counter({
      name: `${PREFIX}events_failed_total`,
      help: 'Changes sent to the dead letter. Any increase needs an operator.',
      labelNames: TABLE_REASON,
      registers,
    }),
    suppressed: new Counter({
      name: `${PREFIX}events_suppressed_total`,
      help: 'Changes dropped on purpose (echoes of own writes, updates that change nothing, changes of tables the stream does not capture).',
      labelNames: TABLE_REASON,
      registers,
    }),
    retries: new Counter({ name: `${PREFIX}retries_total`, help: 'Retried attempts after transient errors.', labelNames: STREAM, registers }),
    batchDuration: new Histogram({
      name: `${PREFIX}batch_duration_seconds`,
      help: 'Time to apply one batch, retries included.',
      labelNames: STREAM,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    publishAck: new Histogram({
      name: `${PREFIX}publish_ack_seconds`,
      help: 'nats sink: time from sending a batch to JetStream until its last message was acknowledged (each attempt).',
      labelNames: STREAM,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    lag: new Gauge({ name: `${PREFIX}lag_seconds`, help: 'Now minus commit time of the last applied change; 0 when caught up.', labelNames: STREAM, registers }),
    changeLogRows: new Gauge({
      name: `${PREFIX}changelog_rows`,
      help: 'Rows in the source change log (cdc_sync.changes, cdc_sync_changes) after its last pruning.',
      labelNames: STREAM,
      registers,
    }),
    pending: new Gauge({ name: `${PREFIX}pending_events`, help: 'Changes waiting in the source (queue depth or backlog).', labelNames: STREAM, registers }),
    bufferEvents: new Gauge({ name: `${PREFIX}buffer_events`, help: 'Changes held in memory by a push source.', labelNames: STREAM, registers }),
    bufferCapacity: new Gauge({ name: `${PREFIX}buffer_capacity`, help: 'Capacity of the push-source buffer.', labelNames: STREAM, registers }),
    lastApplied: new Gauge({
      name: `${PREFIX}last_applied_timestamp_seconds`,
      help: 'Unix time of the last committed batch.',
      labelNames: STREAM,
      registers,
    }),
    sourceGap: new Gauge({
      name: `${PREFIX}source_gap`,
      help: '1 while a table is stopped because the source no longer holds changes it needs (re-snapshot it).',
      labelNames: ['stream', 'direction', 'table'] as const,
      registers,
    }),
    retentionHeadroom: new Gauge({
      name: `${PREFIX}source_retention_headroom_seconds`,
      help: 'Time left before the source cleanup job removes changes the checkpoint still needs.',
      labelNames: STREAM,
      registers,
    }),
    sourceRetainedBytes: new Gauge({
      name: `${PREFIX}source_retained_bytes`,
      help: 'WAL the source replication slot keeps on the server (pg_current_wal_lsn() - restart_lsn); alert before the disk fills.',
      labelNames: STREAM,
      registers,
    }),
    conflicts: new Counter({
      name: `${PREFIX}conflicts_total`,
      help: 'Incoming changes that lost to a newer row in the target (newer-wins); each is logged with table and key.',
      labelNames: ['stream', 'direction', 'table'] as const,
      registers,
    }),
    catchUpRuns: new Counter({
      name: `${PREFIX}catchup_runs_total`,
      help: 'Catch-up reads of a push source (start, reconnect, overflow, interval).',
      labelNames: STREAM,
      registers,
    }),
    catchUpRows: new Counter({
      name: `${PREFIX}catchup_rows_total`,
      help: 'Changes recovered by catch-up reads that the live feed had not delivered.',
      labelNames: ['stream', 'direction', 'table'] as const,
      registers,
    }),
    snapshotRows: new Counter({
      name: `${PREFIX}snapshot_rows_total`,
      help: 'Existing rows copied by a snapshot (initial load or `cdc-sync snapshot`).',
      labelNames: ['stream', 'direction', 'table'] as const,
      registers,
    }),
    snapshotProgress: new Gauge({
      name: `${PREFIX}snapshot_progress_ratio`,
      help: 'Share of a table a snapshot has copied (rows read / rows when its copy began); 1 when done.',
      labelNames: ['stream', 'direction', 'table'] as const,
      registers,
    }),
    connected: new Gauge({ name: `${PREFIX}connected`, help: '1 while source and sink are both connected.', labelNames: STREAM, registers }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Every series of a configured stream exists at 0 from the start, so alerts and rates see it. */
export function initStreamSeries(metrics: Metrics, stream: string, direction: string, tables: string[]): void {
  const s = { stream, direction };
  for (const table of tables) {
    for (const op of OPS) {
      metrics.captured.inc({ ...s, table, op }, 0);
      metrics.applied.inc({ ...s, table, op }, 0);
    }
    for (const reason of FAILURE_REASONS) metrics.failed.inc({ ...s, table, reason }, 0);
    for (const reason of SUPPRESS_REASONS) metrics.suppressed.inc({ ...s, table, reason }, 0);
    metrics.sourceGap.set({ ...s, table }, 0);
    metrics.catchUpRows.inc({ ...s, table }, 0);
    metrics.conflicts.inc({ ...s, table }, 0);
  }
  metrics.retries.inc(s, 0);
  metrics.catchUpRuns.inc(s, 0);
  metrics.batchDuration.zero(s);
  for (const gauge of [metrics.lag, metrics.pending, metrics.bufferEvents, metrics.bufferCapacity, metrics.lastApplied, metrics.connected]) {
    gauge.set(s, 0);
  }
}
