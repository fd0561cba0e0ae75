import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Value } from '../../src/core/change-event.js';
import { eventsFromJson, eventsToJson } from '../../src/core/event-json.js';
import { JsonText } from '../../src/core/json.js';

const value: fc.Arbitrary<Value> = fc.letrec<{ value: Value }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.double(),
    fc.string(),
    fc.bigInt(),
    fc.date({ noInvalidDate: true }),
    fc.uint8Array(),
    fc.json().map((text) => new JsonText(text)),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('$date', '$bytes', '$bigint', '$number', '$json', '$object')), tie('value'), { maxKeys: 3 }),
  ),
})).value;

describe('changes kept with a checkpoint', () => {
  it('read back with the same value types: instants, bytes, bigints, non-finite numbers, JSON texts, and objects that look like tags', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), value), value, (row, key) => {
        const event: ChangeEvent = { table: 'public.items', op: 'update', key: { id: key }, row, before: null, position: '7', commitTime: new Date(5), origin: 'app' };
        expect(eventsFromJson(eventsToJson([event]))).toEqual([event]);
      }),
      { numRuns: 1000 },
    );
    expect(Object.is((eventsFromJson(eventsToJson([{ table: 't', op: 'insert', key: { id: -0 }, row: null, position: '1', commitTime: new Date(0) }]))[0]!.key.id), -0)).toBe(true);
  });
});
