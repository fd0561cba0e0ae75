import fc from 'fast-check';
import { isSafeNumber, parse as parseLossless } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { JsonText, jsonAt, jsonMembers, jsonTextOf, parseJson, toJsonText } from '../../src/core/json.js';

/**
 * A JSON number token: long plain decimals as PostgreSQL writes numeric, and
 * short ones with exponents as it writes float8 (a long mantissa with an
 * exponent can be an integer a double holds exactly, 1000000000.00e10, that
 * lossless-json still calls unsafe: the two readers differ there by design).
 */
const numberToken = fc.oneof(
  fc
    .tuple(fc.boolean(), fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,24}$/)), fc.option(fc.stringMatching(/^[0-9]{1,20}$/), { nil: undefined }))
    .map(([minus, int, frac]) => `${minus ? '-' : ''}${int}${frac === undefined ? '' : `.${frac}`}`),
  fc
    .tuple(fc.boolean(), fc.stringMatching(/^[0-9]$/), fc.option(fc.stringMatching(/^[0-9]{1,3}$/), { nil: undefined }), fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,2}$/))
    .map(([minus, int, frac, e, sign, exp]) => `${minus ? '-' : ''}${int}${frac === undefined ? '' : `.${frac}`}${e}${sign}${exp}`),
);

/** JSON text with raw number tokens among strings that hold quotes, backslashes, colons and digit runs. */
const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    numberToken,
    fc.string({ unit: fc.constantFrom('a', '1', '"', '\\', ':', ',', '[', ' ', '9', '.', 'é') }).map((t) => JSON.stringify(t)),
    fc.constantFrom('true', 'false', 'null'),
    fc.array(tie('value'), { maxLength: 5 }).map((items) => `[${items.join(', ')}]`),
    fc.uniqueArray(fc.tuple(fc.string({ maxLength: 4 }), tie('value')), { maxLength: 5, selector: ([k]) => k }).map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
  ),
})).value;

describe('parseJson', () => {
  it('keeps a decimal with more digits than a double holds exact, as its text', () => {
    expect(parseJson('{"amount":12345678901234567890.123456789}')).toEqual({ amount: '12345678901234567890.123456789' });
  });

  it('keeps an integer above 2^53 exact, as its text', () => {
    expect(parseJson('{"id":9007199254740993}')).toEqual({ id: '9007199254740993' });
    expect(parseJson('[-9223372036854775808]')).toEqual(['-9223372036854775808']);
  });

  it('keeps small numbers as numbers, also next to big ones', () => {
    expect(parseJson('{"a":1,"b":2.5,"c":-3e2,"big":9007199254740993}')).toEqual({ a: 1, b: 2.5, c: -300, big: '9007199254740993' });
    expect(parseJson('{"a":1,"b":0.1}')).toEqual({ a: 1, b: 0.1 });
  });

  it('keeps 17 significant digits split by the decimal point exact', () => {
    // No run of 16 digits, yet a double would round it to 12345678.12345679.
    expect(parseJson('{"v":12345678.123456789}')).toEqual({ v: '12345678.123456789' });
    expect(parseJson('[1234567890.12345678]')).toEqual(['1234567890.12345678']);
  });

  it('keeps a long number that a double holds exactly as a number', () => {
    expect(parseJson('[123456.1234567891]')).toEqual([123456.1234567891]);
  });

  it('leaves strings with long digit runs alone', () => {
    expect(parseJson('{"phone":"12345678901234567890","n":7}')).toEqual({ phone: '12345678901234567890', n: 7 });
  });

  it('keeps a big number exact beside strings that hold colons and long digit runs, with spaces as PostgreSQL writes them', () => {
    expect(parseJson('{"position": "1266:1266:||0|1796418858884393", "id": 9007199254740993}')).toEqual({ position: '1266:1266:||0|1796418858884393', id: '9007199254740993' });
    expect(parseJson('[1, \n 9007199254740993]')).toEqual([1, '9007199254740993']);
    expect(parseJson(' 9007199254740993')).toBe('9007199254740993');
  });

  it('parses literals, arrays and nesting', () => {
    expect(parseJson('[true,false,null,"x",{"a":[]}]')).toEqual([true, false, null, 'x', { a: [] }]);
  });

  it('reads any JSON text as lossless-json reads it: every number a double cannot hold exactly as its text, the rest as JSON.parse does', () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        // A token under 16 characters has at most 15 significant digits, which a double holds: a number (as
        // JSON.parse reads it, also where lossless-json is stricter about large integers such as 1e20).
        const expected = parseLossless(text, null, (digits: string) => (digits.length < 16 || isSafeNumber(digits) ? Number(digits) : digits));
        expect(parseJson(text)).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('throws on malformed JSON, on both paths', () => {
    expect(() => parseJson('{"a":')).toThrow();
    expect(() => parseJson('{"a":12345678901234567890')).toThrow();
    // Quoting a long number must not make a broken token whole.
    expect(() => parseJson('[12345678901234567890-5]')).toThrow();
    expect(() => parseJson('["abc, 12345678901234567890]')).toThrow();
  });
});

describe('toJsonText', () => {
  it('writes NaN, the infinities and -0 as their text, where JSON.stringify writes null and 0', () => {
    expect(toJsonText({ a: Number.NaN, b: Number.POSITIVE_INFINITY, c: Number.NEGATIVE_INFINITY, z: -0, n: 1.5 })).toBe('{"a":"NaN","b":"Infinity","c":"-Infinity","z":"-0","n":1.5}');
  });

  it('writes a Buffer as PostgreSQL \\x-hex text', () => {
    expect(toJsonText({ data: Buffer.from([0x00, 0xab, 0xff]) })).toBe('{"data":"\\\\x00abff"}');
    expect(JSON.parse(toJsonText({ data: Buffer.from([0x00, 0xab, 0xff]) }))).toEqual({ data: '\\x00abff' });
  });

  it('writes a Uint8Array as \\x-hex text too', () => {
    expect(JSON.parse(toJsonText([new Uint8Array([1, 2])]))).toEqual(['\\x0102']);
  });

  it('writes a bigint as its digits in a string', () => {
    expect(toJsonText({ id: 9007199254740993n })).toBe('{"id":"9007199254740993"}');
  });

  it('writes dates as ISO text and other values as JSON', () => {
    expect(toJsonText({ at: new Date('2024-01-02T03:04:05Z'), n: 1, s: 'x', z: null })).toBe(
      '{"at":"2024-01-02T03:04:05.000Z","n":1,"s":"x","z":null}',
    );
  });

  it('writes nested binary and bigint values', () => {
    expect(JSON.parse(toJsonText({ row: { key: [5n], blob: Buffer.from('hi') } }))).toEqual({ row: { key: ['5'], blob: '\\x6869' } });
  });
});

describe('JsonText', () => {
  it('goes into toJsonText as its own text, wherever it sits', () => {
    const a = new JsonText('{ "b" : 2, "n": 1.50, "big": 123456789012345678901234567890, "b": 3 }');
    expect(toJsonText({ row: { a, list: [new JsonText('null'), new JsonText('"1.0"')] }, n: 1 })).toBe(
      '{"row":{"a":{ "b" : 2, "n": 1.50, "big": 123456789012345678901234567890, "b": 3 },"list":[null,"1.0"]},"n":1}',
    );
    expect(toJsonText(new JsonText('[1.0]'))).toBe('[1.0]');
  });

  it('keeps strings that look like its marker as strings', () => {
    const lookalike = '\\udfff\\udbffjson:MS4w';
    expect(JSON.parse(toJsonText({ s: lookalike, j: new JsonText('1.0') }))).toEqual({ s: lookalike, j: 1 });
    expect(toJsonText({ j: new JsonText('1.0'), s: lookalike })).toBe(`{"j":1.0,"s":${JSON.stringify(lookalike)}}`);
  });

  it('reads as its parsed value where a path knows nothing of it (JSON.stringify)', () => {
    expect(JSON.stringify({ a: new JsonText('{"x": 1.50, "id": 9007199254740993}') })).toBe('{"a":{"x":1.5,"id":"9007199254740993"}}');
  });

  it('is written as its text for a json column, any other value as its JSON', () => {
    expect(jsonTextOf(new JsonText(' [1.0] '))).toBe(' [1.0] ');
    expect(jsonTextOf({ a: 1 })).toBe('{"a":1}');
    expect(jsonTextOf('x')).toBe('"x"');
  });
});

describe('jsonMembers', () => {
  it("finds members' text as written: nested, with strings holding brackets, quotes and commas, and spaces around", () => {
    const text = '{"id":1, "j" : { "x" :1.000, "s": "a}\\"b],c" } ,"k":[1, [2, {"y":null}]], "n": -1.50e3 , "t":"x","z":null}';
    expect(Object.fromEntries(jsonMembers(text, new Set(['j', 'k', 'n', 't', 'z', 'missing'])))).toEqual({
      j: '{ "x" :1.000, "s": "a}\\"b],c" }',
      k: '[1, [2, {"y":null}]]',
      n: '-1.50e3',
      t: '"x"',
      z: 'null',
    });
  });

  it('finds a member whose name is escaped', () => {
    expect(jsonMembers('{"a\\"b":[1.0]}', new Set(['a"b'])).get('a"b')).toBe('[1.0]');
  });

  it('reads back every member of any object exactly as written', () => {
    const member = fc.tuple(fc.string({ maxLength: 6 }), jsonText, fc.constantFrom('', ' ', '\n '), fc.constantFrom('', ' '));
    fc.assert(
      fc.property(fc.uniqueArray(member, { maxLength: 6, selector: ([k]) => k }), (members) => {
        const text = `{${members.map(([k, v, before, after]) => `${before}${JSON.stringify(k)}${after}:${before}${v}${after}`).join(',')}}`;
        const found = jsonMembers(text, new Set(members.map(([k]) => k)));
        expect(Object.fromEntries(found)).toEqual(Object.fromEntries(members.map(([k, v]) => [k, v])));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('jsonAt', () => {
  it('finds the text of a value by member names and array indexes, as written', () => {
    const frame = '["1", "2", "realtime:x", "postgres_changes", {"ids": [1], "data": {"record": {"doc": {"n": 2.50}, "s": "]}"}, "old_record": {}}}]';
    expect(jsonAt(frame, [4, 'data', 'record'])).toBe('{"doc": {"n": 2.50}, "s": "]}"}');
    expect(jsonAt(frame, [4, 'data', 'record', 'doc'])).toBe('{"n": 2.50}');
    expect(jsonAt(frame, [4, 'ids', 0])).toBe('1');
    expect(jsonAt(frame, [2])).toBe('"realtime:x"');
    expect(jsonAt(frame, [4, 'data', 'missing'])).toBeUndefined();
    expect(jsonAt(frame, [9])).toBeUndefined();
    expect(jsonAt(frame, [0, 'x'])).toBeUndefined();
  });
});
