import { describe, expect, it } from 'vitest';
import { Lsn } from '../../../src/cdc/mssql/lsn.js';

describe('Lsn', () => {
  const buffer = Buffer.from('0000002a000001f00003', 'hex');

  it('parses the 10-byte binary SQL Server returns and prints it as fixed-width hex', () => {
    expect(Lsn.fromBuffer(buffer).toString()).toBe('0000002A000001F00003');
    expect(Lsn.fromBuffer(buffer).toBuffer().equals(buffer)).toBe(true);
  });

  it('accepts text with or without 0x and rejects anything but 20 hex digits', () => {
    expect(Lsn.parse('0x0000002A000001F00003').equals(Lsn.fromBuffer(buffer))).toBe(true);
    expect(() => Lsn.parse('0x12')).toThrow(/not an LSN/);
    expect(() => Lsn.fromBuffer(Buffer.alloc(8))).toThrow(/10 bytes/);
  });

  it('orders byte by byte, most significant first', () => {
    const a = Lsn.parse('0000002A000001F00003');
    const b = Lsn.parse('0000002A000001F10000');
    const c = Lsn.parse('0000002B000000000000');
    expect(a.compare(b)).toBe(-1);
    expect(c.compare(b)).toBe(1);
    expect(a.compare(Lsn.parse('0000002a000001f00003'))).toBe(0);
    expect(Lsn.max(a, c)).toBe(c);
    expect(Lsn.min(a, c)).toBe(a);
  });

  it('steps back one with carry, and not below zero', () => {
    expect(Lsn.parse('0000002A000001F10000').predecessor().toString()).toBe('0000002A000001F0FFFF');
    expect(Lsn.zero.predecessor().isZero()).toBe(true);
  });
});
