/**
 * The streaming replication wire messages (inside CopyData) and the pgoutput
 * logical decoding messages, protocol version 1.
 * https://www.postgresql.org/docs/current/protocol-replication.html
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */

import type { Row, Value } from '../../core/change-event.js';

/** Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000;

/**
 * One column of a tuple: its text form, null, or undefined for an unchanged
 * TOAST value ('u'), which the server did not send. Plain values rather than
 * one object per column: a backlog decodes millions of them.
 */
export type TupleColumn = string | null | undefined;

export interface RelationColumn {
  name: string;
  typeOid: number;
  key: boolean;
}

export type PgOutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTime: Date; xid: number }
  | { tag: 'commit'; commitLsn: bigint; endLsn: bigint; commitTime: Date }
  | { tag: 'origin'; lsn: bigint; name: string }
  | { tag: 'relation'; relationId: number; schema: string; name: string; replicaIdentity: string; columns: RelationColumn[] }
  | { tag: 'type'; typeOid: number; schema: string; name: string }
  | { tag: 'insert'; relationId: number; newTuple: TupleColumn[] }
  | { tag: 'update'; relationId: number; oldKind: 'K' | 'O' | null; oldTuple: TupleColumn[] | null; newTuple: TupleColumn[] }
  | { tag: 'delete'; relationId: number; oldKind: 'K' | 'O'; oldTuple: TupleColumn[] }
  | { tag: 'truncate'; relationIds: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'message' }
  | { tag: 'unknown'; code: string };

/** pgoutput Insert, Update, Delete: by far the most messages, and the ones whose WAL end nobody needs. */
const CHANGE_CODES = new Set([0x49 /* I */, 0x55 /* U */, 0x44 /* D */]);

/** XLogData's header: 'w', WAL start, WAL end, send time; the pgoutput message follows. */
export const XLOG_HEADER = 25;

/** Whether the XLogData at `offset` carries an Insert, Update or Delete. */
export function isChangeMessage(xlog: Buffer, offset = 0): boolean {
  return CHANGE_CODES.has(xlog[offset + XLOG_HEADER]!);
}

/** The WAL end the XLogData at `offset` carries. */
export function xlogWalEnd(xlog: Buffer, offset = 0): bigint {
  return xlog.readBigUInt64BE(offset + 9);
}

/** Standby status update ('r'): written, flushed and applied positions. */
export function standbyStatus(write: bigint, flush: bigint, apply: bigint, replyRequested = false): Buffer {
  const buffer = Buffer.alloc(34);
  buffer[0] = 0x72; // r
  buffer.writeBigUInt64BE(write, 1);
  buffer.writeBigUInt64BE(flush, 9);
  buffer.writeBigUInt64BE(apply, 17);
  buffer.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25);
  buffer[33] = replyRequested ? 1 : 0;
  return buffer;
}

/** Node.js Buffers have utf8Slice (what toString('utf8') calls); it is not in @types/node. */
type Utf8Slicing = Buffer & { utf8Slice(start: number, end: number): string };

class Reader {
  constructor(
    private readonly buffer: Buffer,
    private offset: number,
  ) {}
  byte(): number {
    return this.buffer[this.offset++]!;
  }
  char(): string {
    return String.fromCharCode(this.byte());
  }
  int16(): number {
    const v = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    const v = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  uint32(): number {
    const v = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  uint64(): bigint {
    const v = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  time(): Date {
    const micros = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return new Date(PG_EPOCH_MS + Number(micros / 1000n));
  }
  string(): string {
    const end = this.buffer.indexOf(0, this.offset);
    const v = this.buffer.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return v;
  }
  bytes(n: number): string {
    // Buffer's own utf8Slice: toString('utf8', …) checks its arguments and looks the encoding up first, per value.
    const v = (this.buffer as Utf8Slicing).utf8Slice(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  tuple(): TupleColumn[] {
    const count = this.int16();
    const columns = new Array<TupleColumn>(count);
    for (let i = 0; i < count; i += 1) {
      const kind = this.byte();
      if (kind === 0x74 /* t */) columns[i] = this.bytes(this.int32());
      else if (kind === 0x6e /* n */) columns[i] = null;
      else if (kind === 0x75 /* u */) columns[i] = undefined;
      else throw new Error(`pgoutput: unknown tuple column kind ${JSON.stringify(String.fromCharCode(kind))}`);
    }
    return columns;
  }
}

/**
 * An Insert's new tuple read straight into a row, the common case kept free
 * of intermediate objects: a copy of `template` (every column, null) with each
 * sent value set through `convert`. Undefined when the message is not an
 * Insert whose tuple has one plain value or null per column; the caller then
 * takes `decodePgOutput`.
 */
export function insertRow(
  message: Buffer,
  offset: number,
  columns: readonly RelationColumn[],
  template: Row,
  convert: (typeOid: number, text: string) => Value,
): Row | undefined {
  // 'I', relation id, 'N', column count.
  if (message[offset] !== 0x49 || message[offset + 5] !== 0x4e || message.readInt16BE(offset + 6) !== columns.length) return undefined;
  const row: Row = { ...template };
  let at = offset + 8;
  for (let i = 0; i < columns.length; i += 1) {
    const kind = message[at];
    if (kind === 0x6e /* n */) {
      at += 1;
      continue;
    }
    if (kind !== 0x74 /* t */) return undefined;
    const length = message.readInt32BE(at + 1);
    const column = columns[i]!;
    row[column.name] = convert(column.typeOid, (message as Utf8Slicing).utf8Slice(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return row;
}

export function decodePgOutput(message: Buffer, offset = 0): PgOutputMessage {
  const r = new Reader(message, offset);
  const code = r.char();
  switch (code) {
    case 'B':
      return { tag: 'begin', finalLsn: r.uint64(), commitTime: r.time(), xid: r.uint32() };
    case 'C':
      r.byte(); // flags
      return { tag: 'commit', commitLsn: r.uint64(), endLsn: r.uint64(), commitTime: r.time() };
    case 'O':
      return { tag: 'origin', lsn: r.uint64(), name: r.string() };
    case 'R': {
      const relationId = r.uint32();
      const schema = r.string();
      const name = r.string();
      const replicaIdentity = r.char();
      const count = r.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i += 1) {
        const flags = r.byte();
        const column = r.string();
        const typeOid = r.uint32();
        r.int32(); // type modifier
        columns.push({ name: column, typeOid, key: (flags & 1) === 1 });
      }
      return { tag: 'relation', relationId, schema, name, replicaIdentity, columns };
    }
    case 'Y':
      return { tag: 'type', typeOid: r.uint32(), schema: r.string(), name: r.string() };
    case 'I': {
      const relationId = r.uint32();
      r.char(); // 'N'
      return { tag: 'insert', relationId, newTuple: r.tuple() };
    }
    case 'U': {
      const relationId = r.uint32();
      let kind = r.char();
      let oldKind: 'K' | 'O' | null = null;
      let oldTuple: TupleColumn[] | null = null;
      if (kind === 'K' || kind === 'O') {
        oldKind = kind;
        oldTuple = r.tuple();
        kind = r.char();
      }
      if (kind !== 'N') throw new Error(`pgoutput: update without new tuple (${kind})`);
      return { tag: 'update', relationId, oldKind, oldTuple, newTuple: r.tuple() };
    }
    case 'D': {
      const relationId = r.uint32();
      const kind = r.char();
      if (kind !== 'K' && kind !== 'O') throw new Error(`pgoutput: delete without old tuple (${kind})`);
      return { tag: 'delete', relationId, oldKind: kind, oldTuple: r.tuple() };
    }
    case 'T': {
      const count = r.uint32();
      const options = r.byte();
      const relationIds: number[] = [];
      for (let i = 0; i < count; i += 1) relationIds.push(r.uint32());
      return { tag: 'truncate', relationIds, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
    }
    case 'M':
      return { tag: 'message' };
    default:
      return { tag: 'unknown', code };
  }
}
