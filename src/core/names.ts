import { ConfigError } from './errors.js';

/** `schema.table` as written in the configuration; schema optional. */
export interface QualifiedName {
  schema: string | undefined;
  name: string;
}

// Control characters and NUL can never be part of a name we quote; everything
// else is legal once quoted by the dialect.
const UNSAFE = /[\u0000-\u001f\u007f]/;

export function validateIdentifier(identifier: string, what: string): string {
  if (identifier.length === 0 || identifier.length > 128 || UNSAFE.test(identifier)) {
    throw new ConfigError(`invalid ${what} name ${JSON.stringify(identifier)}: 1 to 128 printable characters`);
  }
  return identifier;
}

export function parseQualifiedName(text: string): QualifiedName {
  const dot = text.indexOf('.');
  if (dot < 0) return { schema: undefined, name: validateIdentifier(text, 'table') };
  return {
    schema: validateIdentifier(text.slice(0, dot), 'schema'),
    name: validateIdentifier(text.slice(dot + 1), 'table'),
  };
}

export function formatQualifiedName(name: QualifiedName): string {
  return name.schema === undefined ? name.name : `${name.schema}.${name.name}`;
}

/**
 * The comparison key that makes `PersonID`, `person_id` and `personId` the
 * same column: the older scripts map SQL Server PascalCase to Supabase
 * snake_case, and acronyms (`ID`) make a mechanical case conversion ambiguous.
 */
export function columnMatchKey(name: string): string {
  return name.replace(/_/g, '').toLowerCase();
}

/** `PersonID` → `person_id`, `AlignerBatchID` → `aligner_batch_id`, `HTTPStatus` → `http_status`. */
export function toSnakeCase(name: string): string {
  return name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[\s-]+/g, '_')
    .toLowerCase();
}

/** `person_id` → `PersonId`. Used only to suggest names; matching uses `columnMatchKey`. */
export function toPascalCase(name: string): string {
  return name
    .split(/[_\s-]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}
