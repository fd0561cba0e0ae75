import type { TableConfig } from '../../core/mapping.js';
import type { RetryPolicy } from '../../streams/retry.js';

export interface WalSourceOptions {
  url: string;
  tables: TableConfig[];
  slot: string;
  publication: string;
  truncate: 'apply' | 'dead-letter' | 'ignore';
  /** `initial`: a stream without checkpoint first copies its tables, beside the stream from the slot. */
  snapshot: 'initial' | 'never';
  /** Rows per chunk of a copy (snapshotChunkSize; default readLimit). */
  chunkSize?: number;
  /** Changes per chunk (whole transactions; one transaction may exceed it). */
  readLimit: number;
  /** Changes held in memory (decoded or not) before the socket is paused. */
  bufferSize: number;
  /** Bytes of undecoded changes held before the socket is paused. */
  bufferBytes: number;
  statusIntervalMs: number;
  retainedIntervalMs?: number;
  /** How long a chunk that is not full waits for more after the last XLogData while the server sends no keepalive (default 100 ms; ten times that in all at most). */
  holdMs?: number;
  retry: RetryPolicy;
  /** A server silent this long (no message, not even the reply to a status that asks for one) is taken as lost (liveness.timeoutMs). */
  timeoutMs?: number;
}
