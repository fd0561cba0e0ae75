/** SQL Server names in T-SQL: quoting, schema-qualified tables (both directions use them). */

export function quote(name: string): string {
  return `[${name.replace(/]/g, ']]')}]`;
}

export function splitTable(table: string): [string, string] {
  const dot = table.indexOf('.');
  return dot < 0 ? ['dbo', table] : [table.slice(0, dot), table.slice(dot + 1)];
}

export function queueTableName(queueTable: string): string {
  const [schema, name] = splitTable(queueTable);
  return `${quote(schema)}.${quote(name)}`;
}
