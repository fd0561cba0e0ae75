/**
 * A SQL Server log sequence number: binary(10), compared byte by byte
 * (big-endian), printed as 20 hex digits like `0x0000002A000001F00003`.
 * `__$seqval` has the same form and the same order.
 */
export class Lsn {
  private constructor(private readonly hex: string) {}

  static readonly zero = new Lsn('00000000000000000000');

  static fromBuffer(buffer: Uint8Array): Lsn {
    if (buffer.length !== 10) throw new Error(`an LSN has 10 bytes, got ${buffer.length}`);
    return new Lsn(Buffer.from(buffer).toString('hex').toUpperCase());
  }

  static parse(text: string): Lsn {
    const hex = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
    if (!/^[0-9a-fA-F]{20}$/.test(hex)) throw new Error(`not an LSN: ${text}`);
    return new Lsn(hex.toUpperCase());
  }

  toBuffer(): Buffer {
    return Buffer.from(this.hex, 'hex');
  }

  /** Hex digits without 0x: fixed width, so text order is LSN order. */
  toString(): string {
    return this.hex;
  }

  compare(other: Lsn): number {
    return this.hex < other.hex ? -1 : this.hex > other.hex ? 1 : 0;
  }

  equals(other: Lsn): boolean {
    return this.hex === other.hex;
  }

  isZero(): boolean {
    return this.hex === Lsn.zero.hex;
  }

  /** The LSN just below this one: "everything from this LSN on" as an exclusive lower bound. */
  predecessor(): Lsn {
    if (this.isZero()) return this;
    return new Lsn((BigInt(`0x${this.hex}`) - 1n).toString(16).toUpperCase().padStart(20, '0'));
  }

  static max(a: Lsn, b: Lsn): Lsn {
    return a.compare(b) >= 0 ? a : b;
  }

  static min(a: Lsn, b: Lsn): Lsn {
    return a.compare(b) <= 0 ? a : b;
  }
}
