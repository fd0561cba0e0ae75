import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../../src/core/change-event.js';
import { ConfigError } from '../../src/core/errors.js';
import { TableMapping, type TableConfig, type TargetColumn, type TargetTable } from '../../src/core/mapping.js';
import type { LogicalType } from '../../src/core/values.js';
import { CopyLines, TupleShape } from '../../src/cdc/postgres/wal-row-text.js';
import { rowText } from '../../src/core/row-text.js';
import { pgoutputInsert } from '../support/pg-messages.js';

const column = (name: string, type: LogicalType, generated = false): TargetColumn => ({ name, type, generated });

function patients(overrides: Partial<TargetTable> = {}): TargetTable {
  return {
    name: { schema: 'public', name: 'patients' },
    columns: [
      column('person_id', 'integer'),
      column('first_name', 'text'),
      column('aligner_batch_id', 'integer'),
      column('is_active', 'boolean'),
      column('born_on', 'date'),
      column('updated_at', 'timestamptz'),
      column('photo', 'binary'),
      column('full_name', 'text', true),
      column('email', 'text'),
      column('remarks', 'text'),
    ],
    primaryKey: ['person_id'],
    uniqueKeys: [['person_id']],
    ...overrides,
  };
}

const base: TableConfig = { source: 'dbo.tblPatients', target: 'public.patients' };

function mapping(config: Partial<TableConfig> = {}, target = patients()) {
  const warnings: Array<{ message: string; context: Record<string, string> }> = [];
  const m = new TableMapping({ ...base, ...config }, target, 'tables[0]', (message, context) => warnings.push({ message, context }));
  return { m, warnings };
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const commitTime = new Date('2024-01-01T00:00:00Z');

describe('TableMapping', () => {
  it('passes every column of a change through to a target without a schema (a message stream), renames and exclusions kept', () => {
    const open: TargetTable = { name: { schema: 'dbo', name: 'tblPatients' }, columns: [], primaryKey: [], uniqueKeys: [], open: true };
    const { m, warnings } = mapping({ columns: { FirstName: 'first' }, exclude: ['RowVer'] }, open);
    const at = new Date('2021-01-01T00:00:00Z');
    const event: ChangeEvent = { table: 'dbo.tblPatients', op: 'update', key: { PersonID: 1 }, row: { PersonID: 1, FirstName: 'Ann', RowVer: 7, At: at }, position: '1', commitTime: at };
    expect(m.mapEvent(event)).toMatchObject({ key: { PersonID: 1 }, row: { PersonID: 1, first: 'Ann', At: at } });
    expect(m.mapEvent(event).row).not.toHaveProperty('RowVer');
    expect(warnings).toEqual([]);
  });

  it('maps PascalCase source columns to snake_case target columns', () => {
    const { m, warnings } = mapping();
    expect(m.mapRow({ PersonID: 1, FirstName: 'Ann', AlignerBatchID: 7 })).toEqual({ person_id: 1, first_name: 'Ann', aligner_batch_id: 7 });
    expect(m.columnFor('AlignerBatchID')?.name).toBe('aligner_batch_id');
    expect(warnings).toEqual([]);
  });

  it('maps each row by its own columns when rows list other columns (fewer, more, unknown) or list them in another order', () => {
    const { m } = mapping();
    const rows: Row[] = [
      { PersonID: 1, FirstName: 'Ann', AlignerBatchID: 7 },
      { PersonID: 2, FirstName: 'Bob', AlignerBatchID: 8 },
      { FirstName: 'Cy', PersonID: 3, AlignerBatchID: 9 },
      { PersonID: 4, FirstName: 'Di' },
      { PersonID: 5, FirstName: 'Ed', AlignerBatchID: 10, Email: 'e@x.y' },
      { PersonID: 6, Notes: 'six', AlignerBatchID: 11 },
      { PersonID: 7, FirstName: 'Flo', AlignerBatchID: 12 },
    ];
    expect(rows.map((row) => m.mapRow(row))).toEqual([
      { person_id: 1, first_name: 'Ann', aligner_batch_id: 7 },
      { person_id: 2, first_name: 'Bob', aligner_batch_id: 8 },
      { first_name: 'Cy', person_id: 3, aligner_batch_id: 9 },
      { person_id: 4, first_name: 'Di' },
      { person_id: 5, first_name: 'Ed', aligner_batch_id: 10, email: 'e@x.y' },
      { person_id: 6, aligner_batch_id: 11 },
      { person_id: 7, first_name: 'Flo', aligner_batch_id: 12 },
    ]);
  });

  it('uses the primary key of the target when the configuration names none', () => {
    expect(mapping().m.targetKey).toEqual(['person_id']);
  });

  it('renames columns given in `columns`', () => {
    const { m } = mapping({ columns: { Notes: 'remarks', FirstName: 'email' } });
    expect(m.mapRow({ Notes: 'hello', FirstName: 'a@b.c' })).toEqual({ remarks: 'hello', email: 'a@b.c' });
  });

  it('leaves out `exclude` columns, whatever their spelling', () => {
    const { m, warnings } = mapping({ exclude: ['RowVer', 'email'] });
    expect(m.mapRow({ PersonID: 1, RowVer: Buffer.from([1]), Email: 'x@y.z' })).toEqual({ person_id: 1 });
    expect(m.columnFor('Email')).toBeNull();
    // Excluded on purpose: no warning.
    expect(warnings).toEqual([]);
  });

  it('skips a source column the target lacks, with one warning however many rows', () => {
    const { m, warnings } = mapping();
    for (let i = 0; i < 50; i++) {
      expect(m.mapRow({ PersonID: i, NewColumn: 'x' })).toEqual({ person_id: i });
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.context).toEqual({ path: 'tables[0]', column: 'NewColumn' });
    expect(warnings[0]!.message).toMatch(/no target column/);
  });

  it('skips a generated target column, with one warning', () => {
    const { m, warnings } = mapping();
    expect(m.mapRow({ PersonID: 1, FullName: 'Ann Lee' })).toEqual({ person_id: 1 });
    expect(m.mapRow({ PersonID: 2, FullName: 'Bob Lee' })).toEqual({ person_id: 2 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toMatch(/generated/);
    expect(warnings[0]!.context.column).toBe('full_name');
  });

  it('maps source columns whose names are Object.prototype members', () => {
    const target = patients({ columns: [column('person_id', 'integer'), column('constructor', 'text')] });
    const { m, warnings } = mapping({}, target);
    expect(m.mapRow({ PersonID: 1, constructor: 'x' })).toEqual({ person_id: 1, constructor: 'x' });
    expect(warnings).toEqual([]);
    expect(configError(() => mapping({ key: ['toString'] }, target)).message).toContain('tables[0].key[0]');
  });

  describe('configuration errors name the key path', () => {
    it('an explicit column missing in the target', () => {
      const error = configError(() => mapping({ columns: { Notes: 'no_such_column' } }));
      expect(error.message).toContain('tables[0].columns.Notes');
      expect(error.message).toContain('no_such_column');
      expect(error.message).toContain('public.patients');
    });

    it('a key column missing in the target', () => {
      const error = configError(() => mapping({ key: ['PersonID', 'Nope'] }));
      expect(error.message).toContain('tables[0].key[1]');
      expect(error.message).toContain('Nope');
    });

    it('a key without a unique constraint', () => {
      const error = configError(() => mapping({ key: ['Email'] }));
      expect(error.message).toContain('tables[0].key');
      expect(error.message).toMatch(/unique/);
    });

    it('a target without a primary key when no key is configured', () => {
      const error = configError(() => mapping({}, patients({ primaryKey: [], uniqueKeys: [] })));
      expect(error.message).toContain('tables[0].key');
    });

    it('newer-wins without updatedAt is no error: it compares change times', () => {
      const { m } = mapping({ conflict: 'newer-wins' });
      expect(m.byChangeTime).toBe(true);
      expect(mapping({ conflict: 'newer-wins', updatedAt: 'UpdatedAt' }).m.byChangeTime).toBe(false);
      expect(mapping({ conflict: 'source-wins' }).m.byChangeTime).toBe(false);
      // The default: updatedAt stays a source column (catch-up reads), not the conflict rule.
      expect(mapping({ updatedAt: 'UpdatedAt' }).m.byChangeTime).toBe(true);
      expect(m.targetUpdatedAt).toBeUndefined();
    });

    it('an updatedAt column missing in the target', () => {
      const error = configError(() => mapping({ conflict: 'newer-wins', updatedAt: 'ModifiedAt' }));
      expect(error.message).toContain('tables[0].updatedAt');
    });
  });

  it('accepts a configured key that has a unique constraint, in any column order', () => {
    const target = patients({ uniqueKeys: [['person_id'], ['email', 'first_name']] });
    const { m } = mapping({ key: ['FirstName', 'Email'] }, target);
    expect(m.targetKey).toEqual(['first_name', 'email']);
  });

  it('resolves newer-wins updatedAt to its target column', () => {
    const { m } = mapping({ conflict: 'newer-wins', updatedAt: 'UpdatedAt' });
    expect(m.conflict).toBe('newer-wins');
    expect(m.targetUpdatedAt).toBe('updated_at');
  });

  describe('mapEvent', () => {
    it('converts values by target type and keeps the key columns in the row', () => {
      const { m } = mapping();
      const event: ChangeEvent = {
        table: 'dbo.tblPatients',
        op: 'update',
        key: { PersonID: 42n },
        row: {
          FirstName: 'Ann',
          IsActive: 1,
          BornOn: new Date('1990-05-17T00:00:00Z'),
          UpdatedAt: new Date('2024-01-02T03:04:05.678Z'),
          Photo: '\\x0102',
          AlignerBatchID: 9007199254740993n,
        },
        before: { IsActive: 0, FirstName: 'Ann' },
        position: '0/16B3748',
        commitTime,
        origin: 'clinic',
      };
      const mapped = m.mapEvent(event);
      expect(mapped.key).toEqual({ person_id: 42 });
      expect(mapped.row).toEqual({
        person_id: 42,
        first_name: 'Ann',
        is_active: true,
        born_on: '1990-05-17',
        updated_at: '2024-01-02T03:04:05.678Z',
        photo: Buffer.from([1, 2]),
        aligner_batch_id: '9007199254740993',
      });
      expect(mapped.before).toEqual({ is_active: false, first_name: 'Ann' });
      expect(mapped).toMatchObject({ table: 'dbo.tblPatients', op: 'update', position: '0/16B3748', commitTime, origin: 'clinic' });
    });

    it('hands back the row itself when names and values stay as they are, and never changes the source row', () => {
      const { m } = mapping();
      const same = { person_id: 7, first_name: 'Ann', remarks: null };
      const event: ChangeEvent = { table: 'dbo.tblPatients', op: 'insert', key: { person_id: 7 }, row: same, position: '1', commitTime };
      expect(m.mapEvent(event).row).toBe(same);

      // A conversion halfway through the row: the columns before it are copied, the source row stays untouched.
      const source = { person_id: 8, first_name: 'Bo', is_active: 1, email: 'bo@example.com', Unknown: 'x' };
      const mapped = m.mapEvent({ ...event, key: { person_id: 8 }, row: source });
      expect(mapped.row).toEqual({ person_id: 8, first_name: 'Bo', is_active: true, email: 'bo@example.com' });
      expect(source).toEqual({ person_id: 8, first_name: 'Bo', is_active: 1, email: 'bo@example.com', Unknown: 'x' });

      // A key value the row lacks is added to a copy.
      const partial = { first_name: 'Cy' };
      const withKey = m.mapEvent({ ...event, key: { person_id: 9 }, row: partial });
      expect(withKey.row).toEqual({ first_name: 'Cy', person_id: 9 });
      expect(partial).toEqual({ first_name: 'Cy' });
    });

    it('keeps a delete without a row', () => {
      const { m } = mapping();
      const mapped = m.mapEvent({ table: 'dbo.tblPatients', op: 'delete', key: { PersonID: 5 }, row: null, position: '1', commitTime });
      expect(mapped.key).toEqual({ person_id: 5 });
      expect(mapped.row).toBeNull();
    });

    it('fails with the path when the key has no value for a key column', () => {
      const { m } = mapping();
      const error = configError(() =>
        m.mapEvent({ table: 'dbo.tblPatients', op: 'insert', key: { FirstName: 'x' }, row: { FirstName: 'x' }, position: '1', commitTime }),
      );
      expect(error.message).toContain('tables[0]');
      expect(error.message).toContain('person_id');
    });

    it('lets a bad value fail as invalid data', () => {
      const { m } = mapping();
      expect(() =>
        m.mapEvent({ table: 'dbo.tblPatients', op: 'insert', key: { PersonID: 1 }, row: { IsActive: 'maybe' }, position: '1', commitTime }),
      ).toThrow(expect.objectContaining({ reason: 'invalid-data' }));
    });
  });
});

describe('TableMapping.mapEvent with text rows (postgres-wal inserts, core/row-text.ts)', () => {
  const items = (overrides: Partial<TargetTable> = {}): TargetTable => ({
    name: { schema: 'public', name: 'items' },
    columns: [column('id', 'integer'), column('name', 'text'), column('qty', 'integer'), column('doc', 'json')],
    primaryKey: ['id'],
    uniqueKeys: [['id']],
    textRows: true,
    ...overrides,
  });
  const relation = [
    { name: 'id', typeOid: 20, key: true },
    { name: 'name', typeOid: 25, key: false },
    { name: 'qty', typeOid: 23, key: false },
    { name: 'doc', typeOid: 3802, key: false },
  ];
  function inserted(values: (string | null)[]): ChangeEvent {
    const shape = new TupleShape(relation, ['id']);
    const row = shape.newTuple(pgoutputInsert(values), 0, new CopyLines())!;
    const key = shape.key;
    return { table: 'public.items', op: 'insert', key, row, before: null, position: '0/1', commitTime: new Date(0) };
  }
  const mapOf = (target: TargetTable, config: Partial<TableConfig> = {}) =>
    new TableMapping({ source: 'public.items', target: 'public.items', ...config }, target, 'tables[0]', () => {});

  it('hands the event on as it is, its row undecoded, when every column keeps its name and a type that reads its text unchanged', () => {
    const event = inserted(['1', 'a\tb', '3', '{"x": 1.50}']);
    expect(mapOf(items()).mapEvent(event)).toBe(event);
    expect(rowText(event.row!)!.row).toBeUndefined();
  });

  it('decodes the row into a plain one, mapped as any row, when the sink does not write text rows', () => {
    const event = inserted(['1', 'a', '3', null]);
    const mapped = mapOf(items({ textRows: false })).mapEvent(event);
    expect(rowText(mapped.row!)).toBeUndefined();
    expect(mapped.row).toEqual({ id: '1', name: 'a', qty: 3, doc: null });
  });

  it('decodes and maps the row when a column is renamed, excluded, of another logical type or missing on the target', () => {
    const cases: [TargetTable, Partial<TableConfig>, Row][] = [
      [items({ columns: [column('id', 'integer'), column('title', 'text'), column('qty', 'integer'), column('doc', 'json')] }), { columns: { name: 'title' } }, { id: '1', title: 'a', qty: 3, doc: null }],
      [items(), { exclude: ['doc'] }, { id: '1', name: 'a', qty: 3 }],
      [items({ columns: [column('id', 'integer'), column('name', 'text'), column('qty', 'text'), column('doc', 'json')] }), {}, { id: '1', name: 'a', qty: '3', doc: null }],
      [items({ columns: [column('id', 'integer'), column('name', 'text'), column('qty', 'integer')] }), {}, { id: '1', name: 'a', qty: 3 }],
    ];
    for (const [target, config, row] of cases) {
      const mapped = mapOf(target, config).mapEvent(inserted(['1', 'a', '3', null]));
      expect(rowText(mapped.row!)).toBeUndefined();
      expect(mapped.row).toEqual(row);
    }
  });
});
