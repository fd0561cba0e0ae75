import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { columnMatchKey, formatQualifiedName, parseQualifiedName, toPascalCase, toSnakeCase, validateIdentifier } from '../../src/core/names.js';

describe('toSnakeCase', () => {
  it.each([
    ['PersonID', 'person_id'],
    ['AlignerBatchID', 'aligner_batch_id'],
    ['HTTPStatus', 'http_status'],
    ['FirstName', 'first_name'],
    ['firstName', 'first_name'],
    ['ID', 'id'],
    ['Address2Line', 'address2_line'],
    ['already_snake', 'already_snake'],
    ['Days Per Batch', 'days_per_batch'],
  ])('%s → %s', (input, expected) => {
    expect(toSnakeCase(input)).toBe(expected);
  });
});

describe('toPascalCase', () => {
  it('joins snake_case parts with capitals', () => {
    expect(toPascalCase('person_id')).toBe('PersonId');
    expect(toPascalCase('aligner_batch_id')).toBe('AlignerBatchId');
  });
});

describe('columnMatchKey', () => {
  it('makes PascalCase, snake_case and camelCase spellings of a column equal', () => {
    expect(columnMatchKey('PersonID')).toBe('personid');
    expect(columnMatchKey('person_id')).toBe(columnMatchKey('PersonID'));
    expect(columnMatchKey('personId')).toBe(columnMatchKey('PersonID'));
    expect(columnMatchKey('AlignerBatchID')).toBe(columnMatchKey('aligner_batch_id'));
  });

  it('keeps different columns apart', () => {
    expect(columnMatchKey('PersonID')).not.toBe(columnMatchKey('person'));
  });
});

describe('parseQualifiedName', () => {
  it('splits schema and table', () => {
    expect(parseQualifiedName('dbo.tblPatients')).toEqual({ schema: 'dbo', name: 'tblPatients' });
  });

  it('leaves the schema undefined without a dot', () => {
    expect(parseQualifiedName('patients')).toEqual({ schema: undefined, name: 'patients' });
  });

  it('splits at the first dot only', () => {
    expect(parseQualifiedName('public.odd.name')).toEqual({ schema: 'public', name: 'odd.name' });
  });

  it('rejects an empty schema or table', () => {
    expect(() => parseQualifiedName('.patients')).toThrow(ConfigError);
    expect(() => parseQualifiedName('public.')).toThrow(ConfigError);
    expect(() => parseQualifiedName('')).toThrow(ConfigError);
  });

  it('round-trips through formatQualifiedName', () => {
    expect(formatQualifiedName(parseQualifiedName('public.patients'))).toBe('public.patients');
    expect(formatQualifiedName(parseQualifiedName('patients'))).toBe('patients');
  });
});

describe('validateIdentifier', () => {
  it('accepts names that need quoting but are printable', () => {
    expect(validateIdentifier('Order Lines', 'table')).toBe('Order Lines');
    expect(validateIdentifier('weird"name', 'column')).toBe('weird"name');
    expect(validateIdentifier('a'.repeat(128), 'column')).toBe('a'.repeat(128));
  });

  it.each([
    ['empty', ''],
    ['NUL', 'pa\u0000tients'],
    ['newline', 'patients\n; DROP TABLE x'],
    ['tab', 'a\tb'],
    ['DEL', 'a\u007fb'],
    ['too long', 'a'.repeat(129)],
  ])('rejects a name with %s as a ConfigError', (_what, name) => {
    expect(() => validateIdentifier(name, 'column')).toThrow(ConfigError);
    expect(() => validateIdentifier(name, 'column')).toThrow(/invalid column name/);
  });
});
