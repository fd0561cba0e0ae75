/** SQL Server columns as sys.columns describes them (both directions read them). */

/** `nvarchar(50)` from sys.columns (max_length is in bytes; -1 means max). */
export interface TableColumn {
  column_name: string;
  column_type: string;
  max_length: number;
  precision: number;
  scale: number;
}

export function declaredType(row: TableColumn): string {
  const t = row.column_type.toLowerCase();
  if (['varchar', 'char', 'varbinary', 'binary'].includes(t)) return `${t}(${row.max_length === -1 ? 'max' : row.max_length})`;
  if (['nvarchar', 'nchar'].includes(t)) return `${t}(${row.max_length === -1 ? 'max' : row.max_length / 2})`;
  if (['decimal', 'numeric'].includes(t)) return `${t}(${row.precision},${row.scale})`;
  if (['datetime2', 'datetimeoffset', 'time'].includes(t)) return `${t}(${row.scale})`;
  return t;
}

/** A CreatedAt default in server local time: GETDATE(), SYSDATETIME(), CURRENT_TIMESTAMP (not SYSUTCDATETIME()/GETUTCDATE()). */
export function isLocalTimeDefault(definition: string | null): boolean {
  return definition !== null && /getdate\(|sysdatetime\(|current_timestamp/i.test(definition);
}
