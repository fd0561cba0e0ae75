import { describe, expect, it } from 'vitest';
import { CdcSyncError, PermanentError } from '../../src/core/errors.js';
import { JsonText } from '../../src/core/json.js';
import { canonicalValue, convertValue, valuesEqual } from '../../src/core/values.js';

describe('convertValue', () => {
  it('passes null and undefined through as null for every type', () => {
    expect(convertValue(null, 'boolean')).toBeNull();
    expect(convertValue(undefined, 'json')).toBeNull();
  });

  describe('boolean', () => {
    it.each([
      [1, true],
      [0, false],
      ['true', true],
      ['f', false],
      ['T', true],
      [' FALSE ', false],
      ['1', true],
      ['0', false],
      ['yes', true],
      ['n', false],
      [true, true],
      [false, false],
    ] as const)('converts %j to %s', (input, expected) => {
      expect(convertValue(input, 'boolean')).toBe(expected);
    });

    it.each([['maybe'], [2], [new Date(0)]] as const)('rejects %j as invalid data (PermanentError)', (input) => {
      let caught: unknown;
      try {
        convertValue(input, 'boolean');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(PermanentError);
      expect((caught as CdcSyncError).reason).toBe('invalid-data');
      expect((caught as CdcSyncError).transient).toBe(false);
      expect((caught as Error).message).toContain('boolean');
    });
  });

  it('lower-cases uuids', () => {
    expect(convertValue('3F2504E0-4F89-11D3-9A0C-0305E82C3301', 'uuid')).toBe('3f2504e0-4f89-11d3-9a0c-0305e82c3301');
  });

  describe('integer', () => {
    it('turns a bigint into a number when it is safe', () => {
      expect(convertValue(42n, 'integer')).toBe(42);
      expect(convertValue(9007199254740991n, 'integer')).toBe(9007199254740991);
      expect(convertValue(-9007199254740991n, 'integer')).toBe(-9007199254740991);
    });

    it('turns a bigint into its exact digits when a number cannot hold it', () => {
      expect(convertValue(9007199254740993n, 'integer')).toBe('9007199254740993');
      expect(convertValue(9007199254740992n, 'integer')).toBe('9007199254740992');
      expect(convertValue(-9223372036854775808n, 'integer')).toBe('-9223372036854775808');
    });

    it('keeps numbers and digit strings, maps booleans to 1/0', () => {
      expect(convertValue(7, 'integer')).toBe(7);
      expect(convertValue('12345678901234567890', 'integer')).toBe('12345678901234567890');
      expect(convertValue(true, 'integer')).toBe(1);
      expect(convertValue(false, 'integer')).toBe(0);
    });

    it('rejects a date as invalid data', () => {
      expect(() => convertValue(new Date(0), 'integer')).toThrow(PermanentError);
    });
  });

  describe('decimal', () => {
    it('keeps decimal strings exact', () => {
      expect(convertValue('12345678901234567890.123456789', 'decimal')).toBe('12345678901234567890.123456789');
      expect(convertValue('0.10', 'decimal')).toBe('0.10');
    });

    it('writes a bigint as its digits and keeps numbers', () => {
      expect(convertValue(123456789012345678901234567890n, 'decimal')).toBe('123456789012345678901234567890');
      expect(convertValue(12.5, 'decimal')).toBe(12.5);
    });
  });

  it('parses float text', () => {
    expect(convertValue('1.5', 'float')).toBe(1.5);
  });

  it('keeps NaN, the infinities and -0 of a float as the text PostgreSQL reads back (JSON writes them as null and 0)', () => {
    expect(convertValue('NaN', 'float')).toBe('NaN');
    expect(convertValue('-Infinity', 'float')).toBe('-Infinity');
    expect(convertValue(Number.POSITIVE_INFINITY, 'float')).toBe('Infinity');
    expect(convertValue(-0, 'float')).toBe('-0');
    expect(convertValue('-0', 'float')).toBe('-0');
    expect(convertValue(0, 'float')).toBe(0);
    expect(convertValue('1e-300', 'float')).toBe(1e-300);
  });

  describe('dates and times', () => {
    const at = new Date('2024-02-29T13:45:06.789Z');

    it('writes a Date as timestamp text without a zone', () => {
      expect(convertValue(at, 'timestamp')).toBe('2024-02-29T13:45:06.789');
    });

    it('writes a Date as timestamptz text in UTC with Z', () => {
      expect(convertValue(at, 'timestamptz')).toBe('2024-02-29T13:45:06.789Z');
    });

    it('writes a Date as a date', () => {
      expect(convertValue(at, 'date')).toBe('2024-02-29');
    });

    it('keeps timestamp text as it is (all its digits)', () => {
      expect(convertValue('2024-02-29 13:45:06.123456', 'timestamp')).toBe('2024-02-29 13:45:06.123456');
      expect(convertValue('2024-02-29T13:45:06.123456+02:00', 'timestamptz')).toBe('2024-02-29T13:45:06.123456+02:00');
    });
  });

  describe('binary', () => {
    it('reads PostgreSQL \\x-hex text', () => {
      const value = convertValue('\\xdeadbeef00', 'binary');
      expect(Buffer.isBuffer(value)).toBe(true);
      expect([...(value as Uint8Array)]).toEqual([0xde, 0xad, 0xbe, 0xef, 0x00]);
    });

    it('reads SQL Server base64 text', () => {
      const value = convertValue('3q2+7wA=', 'binary');
      expect([...(value as Uint8Array)]).toEqual([0xde, 0xad, 0xbe, 0xef, 0x00]);
    });

    it('keeps bytes as they are', () => {
      const bytes = new Uint8Array([1, 2, 3]);
      expect(convertValue(bytes, 'binary')).toBe(bytes);
    });

    it('rejects a number as invalid data', () => {
      expect(() => convertValue(5, 'binary')).toThrow(PermanentError);
    });
  });

  describe('json', () => {
    it('keeps JSON text as written (a column of text holding JSON, bound for a json column)', () => {
      const text = '{ "a":[1,"x",null], "b":{"c":true}, "n": 1.50 }';
      expect(convertValue(text, 'json')).toEqual(new JsonText(text));
    });

    it('keeps big numbers inside JSON exact', () => {
      expect(convertValue('{"id":9007199254740993}', 'json')).toEqual(new JsonText('{"id":9007199254740993}'));
    });

    it('keeps a JsonText as it is', () => {
      const json = new JsonText('[1.0]');
      expect(convertValue(json, 'json')).toBe(json);
    });

    it('gives a text column the JSON text itself', () => {
      expect(convertValue(new JsonText('{"b": 1.50, "a": 2}'), 'text')).toBe('{"b": 1.50, "a": 2}');
    });

    it('keeps text that is not JSON as text', () => {
      expect(convertValue('not json {', 'json')).toBe('not json {');
    });

    it('keeps objects as they are', () => {
      const doc = { a: 1 };
      expect(convertValue(doc, 'json')).toBe(doc);
    });
  });

  describe('text', () => {
    it('writes dates as ISO, bytes as base64, objects as JSON, numbers as digits', () => {
      expect(convertValue(new Date('2024-01-02T03:04:05Z'), 'text')).toBe('2024-01-02T03:04:05.000Z');
      expect(convertValue(new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00]), 'text')).toBe('3q2+7wA=');
      expect(convertValue({ a: 1 }, 'text')).toBe('{"a":1}');
      expect(convertValue(12, 'text')).toBe('12');
      expect(convertValue(12n, 'text')).toBe('12');
    });
  });
});

describe('canonicalValue / valuesEqual', () => {
  it('treats equal values in different representations as equal', () => {
    expect(valuesEqual(new Date('2024-01-01T00:00:00Z'), '2024-01-01T00:00:00.000Z')).toBe(true);
    expect(valuesEqual(Buffer.from('ab'), '\\x6162')).toBe(true);
    expect(valuesEqual(5n, 5)).toBe(true);
    expect(valuesEqual({ b: 1, a: [new Date(0)] }, { a: ['1970-01-01T00:00:00.000Z'], b: 1 })).toBe(true);
    expect(valuesEqual(undefined, null)).toBe(true);
  });

  it('tells different values apart', () => {
    expect(valuesEqual('a', 'b')).toBe(false);
    expect(valuesEqual(true, 'true')).toBe(false);
    expect(valuesEqual(null, '')).toBe(false);
    expect(valuesEqual([1, 2], [2, 1])).toBe(false);
    expect(canonicalValue(Buffer.from('ab'))).not.toBe(canonicalValue(Buffer.from('ac')));
  });

  it('compares JSON texts by their text: 1.0 and 1.00 are different json values, the same text is the same', () => {
    expect(valuesEqual(new JsonText('{"a": 1.0}'), new JsonText('{"a": 1.0}'))).toBe(true);
    expect(valuesEqual(new JsonText('{"a": 1.0}'), new JsonText('{"a": 1.00}'))).toBe(false);
    expect(valuesEqual(new JsonText('"x"'), 'x')).toBe(false);
    expect(valuesEqual(new JsonText('null'), null)).toBe(false);
  });
});
