import { ByteQueue } from './byte-queue.js';
import { XLOG_HEADER, isChangeMessage, xlogWalEnd } from './wal-protocol.js';
import type { TransactionAssembler, WalTransaction } from './wal-transactions.js';

/** Messages decoded at a time before other work (the sink's replies) gets its turn. */
const DECODE_SLICE = 2000;

/** Where decoding hands its results (WalStream). */
export interface DecodeTarget {
  /** Fewer than a chunk's worth of changes wait decoded: decoding goes on. */
  room(): boolean;
  /** The WAL end of a message other than a change. */
  walEnd(lsn: bigint): void;
  transaction(tx: WalTransaction): void;
  /** Decodes one slice (decode), when one is scheduled. */
  slice(): void;
}

/**
 * XLogData received and not decoded yet, as bytes. Decoded in slices, only
 * so far that a chunk waits ready: a backlog held in memory costs the
 * garbage collector nothing until it is about to be applied.
 */
export class WalDecoder {
  private readonly pending = new ByteQueue();
  private scheduled = false;

  constructor(private readonly target: DecodeTarget) {}

  /** Messages waiting. */
  get length(): number {
    return this.pending.length;
  }

  /** Bytes of the messages waiting. */
  get byteLength(): number {
    return this.pending.byteLength;
  }

  push(bytes: Buffer, start: number, end: number, messages: number): void {
    this.pending.push(bytes, start, end, messages);
  }

  clear(): void {
    this.pending.clear();
  }

  /** Decodes pending messages in slices until a chunk's worth of changes is ready, yielding to other work between slices. */
  schedule(): void {
    if (this.scheduled || this.pending.length === 0 || !this.target.room()) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.target.slice();
    });
  }

  decode(assembler: TransactionAssembler): void {
    const target = this.target;
    const pending = this.pending;
    for (let n = 0; n < DECODE_SLICE && target.room() && pending.next(); n += 1) {
      // XLogData: 'w', WAL start, WAL end, send time, then the pgoutput message (wal-protocol.ts).
      const { bytes, start } = pending;
      if (!isChangeMessage(bytes, start)) target.walEnd(xlogWalEnd(bytes, start));
      const tx = assembler.receive(bytes, start + XLOG_HEADER);
      if (tx) target.transaction(tx);
    }
  }
}
