import { parseQualifiedName, type QualifiedName } from '../../core/names.js';

/** PostgreSQL quoting: double the quote character, wrap in quotes. Names were validated when parsed. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string constant, safe whatever standard_conforming_strings says (as libpq's PQescapeLiteral). */
export function quoteLiteral(value: string): string {
  const quoted = `'${value.replace(/'/g, "''")}'`;
  return value.includes('\\') ? ` E${quoted.replace(/\\/g, '\\\\')}` : quoted;
}

export function quoteTable(name: QualifiedName): string {
  return `${quoteIdent(name.schema ?? 'public')}.${quoteIdent(name.name)}`;
}

/** `items` → public.items, the form the change-log triggers record. */
export function qualify(table: string): QualifiedName {
  const name = parseQualifiedName(table);
  return { schema: name.schema ?? 'public', name: name.name };
}

export function qualifiedText(table: string): string {
  const name = qualify(table);
  return `${name.schema}.${name.name}`;
}
