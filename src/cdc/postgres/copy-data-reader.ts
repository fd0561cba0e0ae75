import type pg from 'pg';

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
  const stream = (client as unknown as { connection?: { stream?: NodeJS.EventEmitter } }).connection?.stream;
  const listeners = stream?.listeners('data') ?? [];
  // pg (lib/connection.js attachListeners, pg-protocol's parse) reads the socket with one 'data' listener.
  if (!stream || listeners.length !== 1) throw new Error(`pg's connection is not as expected (${listeners.length} socket readers): cannot read replication messages`);
  const pgReader = listeners[0] as DataListener;
  stream.removeListener('data', pgReader);
  stream.on('data', copyDataSplitter(pgReader, handlers));
}

/** A socket reader that hands XLogData runs and keepalives to `handlers`, and whole other messages to `other`. */
export function copyDataSplitter(other: DataListener, handlers: CopyDataHandlers): DataListener {
  // The start of a message the previous read ended in the middle of.
  let carry: Buffer | null = null;
  return (chunk: Buffer) => {
    const bytes: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
    carry = null;
    let at = 0;
    let runStart = 0;
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
    // A copy: a slice would keep the whole read alive.
    if (at < bytes.length) carry = Buffer.from(bytes.subarray(at));
  };
}
