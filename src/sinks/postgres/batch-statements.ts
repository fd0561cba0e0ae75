import type { ChangeEvent, Row } from '../../core/change-event.js';
import { jsonlessNumberText, jsonTextOf, toJsonText } from '../../core/json.js';
import { rowText } from '../../core/row-text.js';
import { groupStatements, type StatementGroup } from '../statement-groups.js';
import { copyData } from './copy-text.js';
import { deleteSql, emptyTableSql, upsertSql, type UpsertShape } from './queries.js';
import type { TargetInfo } from './target-info.js';

export interface PreparedGroup {
  group: StatementGroup;
  /** New rows only: their COPY text, written with `copyInSql`; null: the json statement. */
  copy: Buffer[] | null;
  /** The rows as the json statement's parameter ('' for a copy or a truncate). */
  param: string;
}

export function upsertShape(group: StatementGroup, target: TargetInfo): UpsertShape {
  return {
    table: target.table.name,
    columns: group.columns,
    key: target.key,
    newerWinsBy: target.newerWinsBy,
    updatable: target.updatable,
    textCompared: target.textCompared,
    jsonColumns: target.jsonColumns,
  };
}

/** The statement of a group, its rows in `$1` (none for a truncate). */
export function statementSql(group: StatementGroup, target: TargetInfo): string {
  if (group.op === 'truncate') return emptyTableSql(target.table.name);
  return group.op === 'delete' ? deleteSql(target.table.name, target.key) : upsertSql(upsertShape(group, target));
}

/** Per group its statement's data; the group's new rows (`insert` changes) split off for COPY where the table takes it. */
export function groupsOf(changes: ChangeEvent[], target: (table: string) => TargetInfo, copyAllowed: (table: string) => boolean): PreparedGroup[] {
  const prepared: PreparedGroup[] = [];
  for (const group of groupStatements(changes)) {
    if (group.op === 'truncate') {
      prepared.push({ group, copy: null, param: '' });
      continue;
    }
    if (group.op === 'upsert' && copyAllowed(group.table)) {
      const { copy, rest } = splitNewRows(group, target);
      if (copy) prepared.push(copy);
      if (rest.events.length > 0) prepared.push({ group: rest, copy: null, param: rowsJson(rest.events.map((e) => e.row!), target(group.table)) });
      continue;
    }
    const rows = group.op === 'delete' ? group.events.map((e) => e.key) : group.events.map((e) => e.row!);
    prepared.push({ group, copy: null, param: rowsJson(rows, group.op === 'delete' ? undefined : target(group.table)) });
  }
  return prepared;
}

/** The group's new rows as one COPY (when every value has a text form), and the group of the others. */
function splitNewRows(group: StatementGroup, target: (table: string) => TargetInfo): { copy: PreparedGroup | null; rest: StatementGroup } {
  const inserts = group.events.every((e) => e.op === 'insert') ? group.events : group.events.filter((e) => e.op === 'insert');
  if (inserts.length === 0) return { copy: null, rest: group };
  const json = target(group.table).jsonColumns;
  // COPY names its columns in the order of the first row's text, if it is one: text rows are their lines already.
  const text = rowText(inserts[0]!.row!);
  const columns = text && text.columns.length === group.columns.length && text.columns.every((c) => group.columns.includes(c)) ? [...text.columns] : group.columns;
  const data = copyData(
    inserts.map((e) => e.row!),
    columns.map((name) => ({ name, json: json.some((j) => j.name === name) })),
  );
  if (data === null) return { copy: null, rest: group };
  const others = inserts.length === group.events.length ? [] : group.events.filter((e) => e.op !== 'insert');
  return {
    copy: { group: { ...group, columns, events: inserts }, copy: data, param: '' },
    rest: { ...group, events: others },
  };
}

/**
 * The statement parameter: toJsonText's replacer only changes binary and
 * bigint values, so rows of plain values (text, numbers, booleans, null,
 * Dates) go through JSON.stringify without one, which is several times
 * faster. Anything else (binary, bigint, nested json, NaN, the infinities
 * and -0) takes toJsonText. Upserted rows carry a json column's value as a
 * JSON string of its text, which the statement reads back (incomingRows in
 * queries.ts).
 */
function rowsJson(rows: Row[], target?: TargetInfo): string {
  const json = target?.jsonColumns ?? [];
  if (json.length > 0) rows = rows.map((row) => withJsonTexts(row, json));
  for (const row of rows) {
    for (const column in row) {
      const value = row[column];
      if (typeof value === 'bigint' || (typeof value === 'object' && value !== null && !(value instanceof Date))) return toJsonText(rows);
      if (typeof value === 'number' && jsonlessNumberText(value) !== undefined) return toJsonText(rows);
    }
  }
  return JSON.stringify(rows);
}

function withJsonTexts(row: Row, json: readonly { name: string }[]): Row {
  const out = { ...row };
  for (const { name } of json) {
    const value = row[name];
    if (value !== null && value !== undefined) out[name] = jsonTextOf(value);
  }
  return out;
}
