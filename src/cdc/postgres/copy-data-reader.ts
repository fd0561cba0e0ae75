import type pg from 'pg';
import { pgSocket } from '../../db/postgres/connection.js';

export interface CopyDataHandlers {
  /** `messages` whole CopyData messages carrying XLogData, which are `bytes[start, end)`; the buffer is not reused. */
  xlog(bytes: Buffer, start: number, end: number, messages: number): void;
  /** A primary keepalive: the server's WAL end, and whether it asks for a reply. */
  keepalive(walEnd: bigint, replyRequested: boolean): void;
}

const COPY_DATA = 0x64; // 'd'
const XLOG_DATA = 0x77; // 'w'
const KEEPALIVE = 0x6b; // 'k'

type DataListener = (chunk: Buffer) => void;

/**
 * Takes the replication connection's CopyData messages off the socket before
 * pg parses them. pg makes a message object and a buffer slice for each and
 * copies every read into its own buffer; a backlog streams hundreds of
 * thousands of them a second, and that was the largest cost per change after
 * decoding. Every other message (CopyBothResponse, ErrorResponse,
 * CommandComplete, notices…) still goes to pg whole, in order, so pg keeps
 * running the connection, its errors and its end.
 * Message framing: https://www.postgresql.org/docs/current/protocol-message-formats.html;
 * XLogData and keepalives: https://www.postgresql.org/docs/current/protocol-replication.html
 * Call it on a connected, idle client before START_REPLICATION.
 */
export function readCopyData(client: pg.Client, handlers: CopyDataHandlers): void {
  const stream = pgSocket(client);
  const listeners = stream?.listeners('data') ?? [];
  // pg (lib/connection.js attachListeners, pg-protocol's parse) reads the socket with one 'data' listener.
  if (!stream || listeners.length !== 1) throw new Error(`pg's connection is not as expected (${listeners.length} socket readers): cannot read replication messages`);
  const pgReader = listeners[0] as DataListener;
  stream.removeListener('data', pgReader);
  stream.on('data', copyDataSplitter(pgReader, handlers));
}


/** A socket reader that hands XLogData runs and keepalives to `handlers`, and whole other messages to `other`. */
export function copyDataSplitter(other: DataListener, handlers: CopyDataHandlers): DataListener {
  /** Hands over the whole messages in bytes[from, …); returns where an incomplete one begins. */
  const scan = (bytes: Buffer, from: number): number => {
    let at = from;
    let runStart = from;
    let run = 0;
    while (bytes.length - at >= 5) {
      const end = at + 1 + bytes.readUInt32BE(at + 1);
      if (end > bytes.length) break;
      const type = bytes[at];
      if (type === COPY_DATA && bytes[at + 5] === XLOG_DATA) {
        if (run === 0) runStart = at;
        run += 1;
      } else {
        if (run > 0) handlers.xlog(bytes, runStart, at, run);
        run = 0;
        // Keepalive: 'k', WAL end, send time, reply requested.
        if (type === COPY_DATA && bytes[at + 5] === KEEPALIVE && end - at >= 23) handlers.keepalive(bytes.readBigUInt64BE(at + 6), bytes[at + 22] === 1);
        else other(bytes.subarray(at, end));
      }
      at = end;
    }
    if (run > 0) handlers.xlog(bytes, runStart, at, run);
    return at;
  };
  // A message the previous read ended in the middle of: its first bytes (or all of it, once its length is known).
  let partial: Buffer | null = null;
  let filled = 0;
  return (chunk: Buffer) => {
    let at = 0;
    if (partial) {
      if (filled < 5) {
        // Not even the length yet: gather the header first.
        const take = Math.min(5 - filled, chunk.length);
        chunk.copy(partial, filled, 0, take);
        filled += take;
        at = take;
        if (filled < 5) return;
        const whole = Buffer.allocUnsafe(1 + partial.readUInt32BE(1));
        partial.copy(whole, 0, 0, 5);
        partial = whole;
      }
      // Only the rest of this one message is copied, not the whole read.
      const take = Math.min(partial.length - filled, chunk.length - at);
      chunk.copy(partial, filled, at, at + take);
      filled += take;
      at += take;
      if (filled < partial.length) return;
      const whole = partial;
      partial = null;
      scan(whole, 0);
    }
    at = scan(chunk, at);
    if (at < chunk.length) {
      // Copied: a slice would keep the whole read alive.
      const rest = chunk.length - at;
      partial = Buffer.allocUnsafe(rest >= 5 ? 1 + chunk.readUInt32BE(at + 1) : 5);
      filled = chunk.copy(partial, 0, at);
    }
  };
}
