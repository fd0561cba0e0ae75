import type { Source } from '../cdc/source.js';
import type { CheckpointStore } from '../checkpoints/checkpoint-store.js';
import type { StreamConfig } from '../config/schema.js';
import type { BatchLog } from '../control/batch-log.js';
import type { DeadLetterStore } from '../dead-letters/dead-letter-store.js';
import type { FileConflictLog } from '../dead-letters/file-conflict-log.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Sink } from '../sinks/sink.js';

export interface StreamParts {
  config: StreamConfig;
  /** Key path of the stream in the configuration, for error messages (`streams[0]`). */
  path: string;
  source: Source;
  sink: Sink;
  /** A separate store, or null when the sink keeps checkpoints in its own transaction. */
  checkpoints: CheckpointStore | null;
  /** Where dead letters go when the sink does not store them itself (`storesDeadLetters` false). */
  deadLetters?: DeadLetterStore | null;
  /** Where the log entries of conflicts go that the sink reports without logging them itself. */
  conflictLog?: Pick<FileConflictLog, 'append'> | null;
  metrics: Metrics;
  log: Logger;
  /** Recent batches for `GET /api/sync/logs`. */
  batchLog?: BatchLog;
  /** `run --once`: stop (gracefully) as soon as the source reports it has nothing more to read. */
  once?: boolean;
}
