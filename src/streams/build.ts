import { dirname, join } from 'node:path';
import { createSource } from '../cdc/index.js';
import type { CheckpointStore } from '../checkpoints/checkpoint-store.js';
import { FileCheckpointStore } from '../checkpoints/file-checkpoint-store.js';
import type { Config } from '../config/schema.js';
import { FileConflictLog } from '../dead-letters/file-conflict-log.js';
import { FileDeadLetterStore } from '../dead-letters/file-dead-letter-store.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { createSink } from '../sinks/index.js';
import { OwnWrites } from '../core/own-writes.js';
import { Stream } from './stream.js';
import type { StreamParts } from './stream-parts.js';

/**
 * Streams for a configuration, without connecting to anything: `validate`
 * uses this to find every problem a configuration can show before start.
 */
export function buildStreams(
  config: Config,
  metrics: Metrics,
  log: Logger,
  extras: Pick<StreamParts, 'batchLog' | 'once'> = {},
): Stream[] {
  let fileStore: FileCheckpointStore | undefined;
  // Two-way with Supabase: the reverse stream drops the echoes of the forward stream's writes.
  const ownWrites = new OwnWrites();
  let deadLetterFile: FileDeadLetterStore | undefined;
  let conflictFile: FileConflictLog | undefined;
  const built = config.streams.map((stream, i) => {
    const path = `streams[${i}]`;
    const source = createSource(stream, path, ownWrites);
    const sink = createSink(stream, path, config.streams, ownWrites);
    let checkpoints: CheckpointStore | null = null;
    const store = config.checkpoints.store;
    if (store === 'file' || (store === 'auto' && !sink.storesCheckpoints)) {
      fileStore ??= new FileCheckpointStore(config.checkpoints.path);
      checkpoints = fileStore;
    } else if (store !== 'auto' && store !== stream.sink.type) {
      throw new ConfigError(
        `checkpoints.store: "${store}" keeps checkpoints in the sink's transaction, but ${path}.sink.type is "${stream.sink.type}"; use "file" or "auto"`,
      );
    }
    const deadLetters = sink.storesDeadLetters ? null : (deadLetterFile ??= new FileDeadLetterStore(config.deadLetters.path));
    // A sink that keeps its dead letters keeps its conflict log too (cdc_sync.conflicts); the others log beside the dead letters.
    const conflictLog = sink.storesDeadLetters ? null : (conflictFile ??= new FileConflictLog(config.conflicts.path ?? join(dirname(config.deadLetters.path), 'conflicts.jsonl')));
    return new Stream({ config: stream, path, source, sink, checkpoints, deadLetters, conflictLog, metrics, log, ...extras });
  });
  return built.filter((stream, i) => {
    if (!config.streams[i]!.enabled) log.info({ stream: stream.name }, 'stream disabled by configuration; not run');
    return config.streams[i]!.enabled;
  });
}
