import type { ChangeEvent, Row } from './change-event.js';
import { ConfigError } from './errors.js';
import { columnMatchKey, type QualifiedName } from './names.js';
import { plainRow, rowText, type RowText } from './row-text.js';
import { convertValue, type LogicalType } from './values.js';

/** What the sink found out about a target table (introspection). */
export interface TargetColumn {
  name: string;
  type: LogicalType;
  /** Generated or identity-always columns: never written. */
  generated: boolean;
  /** The database's own name of the column's type (a domain's base type), where the sink reads it. */
  dbType?: string;
}

export interface TargetTable {
  name: QualifiedName;
  columns: TargetColumn[];
  primaryKey: string[];
  /** Column sets with a unique constraint or index (ON CONFLICT targets). */
  uniqueKeys: string[][];
  /** Tables this one's foreign keys point at (the order a batch's tables are applied in); absent when the sink cannot tell. */
  references?: QualifiedName[];
  /**
   * A target without a schema (a message stream): every source column passes
   * through unconverted, under its own name or its `columns:` rename, and
   * the key is the source's unless `key:` names one.
   */
  open?: boolean;
  /** The sink writes text rows (core/row-text.ts) from their text: a text row the mapping leaves as it is reaches it undecoded. */
  textRows?: boolean;
}

/** One `tables:` entry of the configuration. */
export interface TableConfig {
  source: string;
  /** '' when the configuration left it out: the sink finds it (matchTarget). */
  target: string;
  key?: string[] | undefined;
  columns?: Record<string, string> | undefined;
  exclude?: string[] | undefined;
  conflict?: 'source-wins' | 'newer-wins' | undefined;
  updatedAt?: string | undefined;
  /** A column whose non-null value means the row is deleted (soft delete). */
  softDelete?: string | undefined;
  /**
   * Column ownership: the (source) columns this stream may change on a row
   * that already exists; the others stay as the target has them. New rows
   * are written whole. Unset: all columns.
   */
  owns?: string[] | undefined;
}

/**
 * How a table's changes meet the target's: every one applied, the newer by
 * the `updatedAt` column (only with `conflict: newer-wins` said), or the
 * newer by change time (the default).
 */
export function conflictRule(config: Pick<TableConfig, 'conflict' | 'updatedAt'>): 'source-wins' | 'updated-at' | 'change-time' {
  if (config.conflict === 'source-wins') return 'source-wins';
  return config.conflict === 'newer-wins' && config.updatedAt !== undefined ? 'updated-at' : 'change-time';
}

/** The column list of the last row mapped and the target column of each (mapRow). */
interface Shape {
  names: string[];
  columns: (TargetColumn | null)[];
}

export type Warn = (message: string, context: Record<string, string>) => void;

/**
 * Maps source rows onto one target table: names (explicit renames, then
 * PascalCase ↔ snake_case by `columnMatchKey`), exclusions, and value types
 * taken from the target. A source column the target lacks or generates is
 * skipped with one warning, so a new column on the source does not stop the
 * stream.
 */
export class TableMapping {
  readonly source: string;
  readonly target: TargetTable;
  readonly targetKey: string[];
  readonly conflict: 'source-wins' | 'newer-wins';
  readonly targetUpdatedAt: string | undefined;
  /**
   * newer-wins without an updatedAt column: each change's own commit/capture
   * time is its version, compared with the target's own newest captured
   * change of the key (sinks whose target captures its changes: two-way).
   */
  readonly byChangeTime: boolean;
  /** newer-wins by the `updatedAt` column (`targetUpdatedAt`): a change that meets a delete is still judged by change time (judgedByChangeTime). */
  readonly byUpdatedAt: boolean;
  /** Target columns this stream may update on existing rows, or null for all. */
  readonly owned: string[] | null;
  private readonly byName = new Map<string, TargetColumn>();
  private readonly byMatchKey = new Map<string, TargetColumn>();
  private readonly resolved = new Map<string, TargetColumn | null>();
  private readonly rowShape: Shape = { names: [], columns: [] };
  private readonly keyShape: Shape = { names: [], columns: [] };
  /** keepsText's answer for the last column list it was asked about (one per Relation message of the source). */
  private textColumns: { columns: readonly string[] | null; keeps: boolean } = { columns: null, keeps: false };
  private readonly explicit: Record<string, string>;
  private readonly excluded: Set<string>;

  constructor(
    config: TableConfig,
    target: TargetTable,
    private readonly path: string,
    private readonly warn: Warn,
  ) {
    this.source = config.source;
    this.target = target;
    this.conflict = config.conflict ?? 'newer-wins';
    const rule = conflictRule(config);
    const byColumn = rule === 'updated-at';
    this.explicit = Object.assign(Object.create(null) as Record<string, string>, config.columns);
    this.excluded = new Set((config.exclude ?? []).map(columnMatchKey));
    for (const column of target.columns) {
      this.byName.set(column.name, column);
      if (!this.byMatchKey.has(columnMatchKey(column.name))) this.byMatchKey.set(columnMatchKey(column.name), column);
    }
    for (const [from, to] of Object.entries(this.explicit)) {
      if (!this.byName.has(to) && !target.open) {
        throw new ConfigError(`${path}.columns.${from}: target column "${to}" does not exist in ${config.target}`);
      }
    }
    this.targetKey = config.key ? config.key.map((k, i) => this.requireColumn(k, `${path}.key[${i}]`, config.target)) : target.primaryKey;
    if (target.open) {
      // Nothing to upsert into: each change names its own key.
    } else if (this.targetKey.length === 0) {
      throw new ConfigError(`${path}.key: ${config.target} has no primary key; name the key columns`);
    }
    const keySet = [...this.targetKey].sort().join(',');
    if (!target.open && !target.uniqueKeys.some((u) => [...u].sort().join(',') === keySet)) {
      throw new ConfigError(
        `${path}.key: ${config.target} has no primary key or unique constraint on (${this.targetKey.join(', ')}); upserts need one`,
      );
    }
    // updatedAt also names the source's column for catch-up reads; the target needs it only for newer-wins.
    // Unset conflict keeps updatedAt a source column only (the clinic example excludes it from the target).
    this.targetUpdatedAt = byColumn ? this.requireColumn(config.updatedAt!, `${path}.updatedAt`, config.target) : undefined;
    this.byChangeTime = rule === 'change-time';
    this.byUpdatedAt = byColumn;
    this.owned = config.owns ? config.owns.map((c, i) => this.requireColumn(c, `${path}.owns[${i}]`, config.target)) : null;
  }

  /** Target column for a source column, or null when it is excluded or the target lacks it. */
  columnFor(sourceColumn: string): TargetColumn | null {
    const cached = this.resolved.get(sourceColumn);
    if (cached !== undefined) return cached;
    const column = this.resolve(sourceColumn);
    this.resolved.set(sourceColumn, column);
    return column;
  }

  /**
   * The row in target names and types. When every column keeps its name and
   * value (PostgreSQL to PostgreSQL, say) the row itself comes back: no copy
   * per change. Callers never modify what it returns. `shape` remembers the
   * target columns of the last row's column list: rows of a table nearly
   * always list the same columns in the same order, so most rows take them
   * from there rather than looking each name up.
   */
  mapRow(row: Row, shape: Shape = this.rowShape): Row {
    let out: Row | null = null;
    let index = 0;
    let same = true;
    for (const name in row) {
      let column: TargetColumn | null;
      if (same && shape.names[index] === name) column = shape.columns[index]!;
      else {
        same = false;
        column = this.columnFor(name);
      }
      const value = column ? convertValue(row[name], column.type) : undefined;
      if (out === null && (!column || column.name !== name || value !== row[name])) {
        // First difference: copy the columns before it, then go on in the copy.
        out = {};
        let i = 0;
        for (const earlier in row) {
          if (i++ === index) break;
          out[earlier] = row[earlier]!;
        }
      }
      if (out !== null && column) out[column.name] = value!;
      index += 1;
    }
    if (!same || index !== shape.names.length) {
      shape.names = Object.keys(row);
      shape.columns = shape.names.map((name) => this.columnFor(name));
    }
    return out ?? row;
  }

  /** The event in target names and types; key columns always present. */
  mapEvent(event: ChangeEvent): ChangeEvent {
    if (event.op === 'truncate') return event; // the whole table: no key, no row
    const key = this.mapRow(event.key, this.keyShape);
    for (let i = 0; i < this.targetKey.length; i += 1) {
      const k = this.targetKey[i]!;
      if (!(k in key)) throw new ConfigError(`${this.path}: change on ${this.source} has no value for key column ${k}`);
    }
    const text = event.row ? rowText(event.row) : undefined;
    if (text && key === event.key && this.keepsText(text)) return event;
    let row: Row | null = null;
    if (event.row) {
      // A text row the sink would not write as text is decoded here: mapped rows are plain objects.
      row = this.mapRow(text ? plainRow(event.row) : event.row);
      for (const k in key) {
        if (row[k] === key[k]) continue;
        if (row === event.row) row = { ...row };
        row[k] = key[k]!;
      }
    }
    const before = event.before ? this.mapRow(event.before) : event.before;
    // Nothing to rename or convert: the event itself (events are never changed after capture).
    if (key === event.key && row === event.row && before === event.before) return event;
    return { ...event, key, row, before };
  }

  /**
   * Whether rows of `text`'s columns map onto themselves, so the row may stay
   * text: the sink writes text rows, and every column keeps its name and goes
   * to a written column of the logical type that reads its text unchanged
   * (what mapRow would find, value by value). Asked once per column list.
   */
  private keepsText(text: RowText): boolean {
    if (this.textColumns.columns !== text.columns) {
      const keeps =
        this.target.textRows === true &&
        text.columns.every((name, i) => {
          const column = this.columnFor(name);
          return column !== null && column.name === name && text.shape.types[i] !== undefined && column.type === text.shape.types[i];
        });
      this.textColumns = { columns: text.columns, keeps };
    }
    return this.textColumns.keeps;
  }

  private resolve(sourceColumn: string): TargetColumn | null {
    const match = columnMatchKey(sourceColumn);
    if (this.excluded.has(match)) return null;
    const explicitName = this.explicit[sourceColumn];
    if (this.target.open) return { name: explicitName ?? sourceColumn, type: 'other', generated: false };
    const column = explicitName ? this.byName.get(explicitName) : (this.byName.get(sourceColumn) ?? this.byMatchKey.get(match));
    if (!column) {
      this.warn('source column has no target column; skipped', { path: this.path, column: sourceColumn });
      return null;
    }
    if (column.generated) {
      this.warn('target column is generated; skipped', { path: this.path, column: column.name });
      return null;
    }
    return column;
  }

  private requireColumn(sourceColumn: string, path: string, targetName: string): string {
    const name = this.explicit[sourceColumn] ?? sourceColumn;
    if (this.target.open) return name;
    const column = this.byName.get(name) ?? this.byMatchKey.get(columnMatchKey(name));
    if (!column) throw new ConfigError(`${path}: column "${sourceColumn}" has no match in ${targetName}`);
    return column.name;
  }
}
