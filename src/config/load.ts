import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type * as z from 'zod';
import { ConfigError } from '../core/errors.js';
import { applyLegacyEnvironment } from './legacy-env.js';
import { configSchema, type Config } from './schema.js';

export type { Environment } from './environment.js';
import type { Environment } from './environment.js';

/** Reads, substitutes `${VAR}` and validates a configuration file. Throws ConfigError naming key paths. */
export function loadConfigFile(path: string, env: Environment = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read configuration ${path}: ${(error as Error).message}`);
  }
  return parseConfig(text, env, path);
}

export function parseConfig(text: string, env: Environment = process.env, source = 'configuration'): Config {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${source}: not valid YAML: ${(error as Error).message}`);
  }
  const problems: string[] = [];
  const substituted = substitute(document, [], env, problems);
  if (problems.length > 0) throw new ConfigError(`${source}: ${problems.join('; ')}`);
  const input = applyLegacyEnvironment(substituted, env);
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(`${source}: ${formatIssues(result.error.issues, input)}`);
  return result.data;
}

/** `streams[0].sink.url` */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

function formatIssues(issues: ReadonlyArray<z.core.$ZodIssue>, input: unknown): string {
  return issues
    .map((issue) => {
      const path = formatPath(issue.path) || '(top level)';
      // A key left out: say what to write, not the validator's "expected string, received undefined".
      const absent = (issue.code === 'invalid_type' || issue.code === 'invalid_value') && issue.path.length > 0 && valueAt(input, issue.path) === undefined;
      if (absent) return `${path}: missing; ${missingHint(issue)}`;
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}

function valueAt(node: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let value = node;
  for (const part of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

/** What to write for a required key, by where it is: `streams[0].source` is a database, `tables[0].source` a table. */
function missingHint(issue: z.core.$ZodIssue): string {
  const key = String(issue.path.at(-1));
  const inTable = issue.path.includes('tables');
  const examples: Record<string, string> = {
    streams: 'streams: [{ name: …, source: …, sink: …, tables: […] }]',
    name: 'name: clinic-to-cloud (a name for the stream, used in metrics and logs)',
    source: inTable ? 'source: dbo.tblPatients (the table changes are read from)' : 'source: { type: mssql-cdc, url: "mssql://user:${PASSWORD}@host:1433/db" } (the database changes are read from)',
    sink: 'sink: { type: postgres, url: "postgres://user:${PASSWORD}@host:5432/db" } (the database changes are written to)',
    tables: 'tables: [{ source: dbo.tblPatients, target: public.patients }]',
    target: 'target: public.patients (the table changes are written to)',
    url: 'url: "…" (the connection URL, or a file path for SQLite; ${VAR} reads a password from the environment)',
  };
  if (examples[key]) return `write ${examples[key]}`;
  if (issue.code === 'invalid_value') return `write ${key}: one of ${issue.values.map(String).join(', ')}`;
  return `write ${key}: <${issue.code === 'invalid_type' ? issue.expected : 'value'}>`;
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

function substitute(node: unknown, path: PropertyKey[], env: Environment, problems: string[]): unknown {
  if (typeof node === 'string') {
    const value = node.replace(VARIABLE, (_, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
      return '';
    });
    return value;
  }
  if (Array.isArray(node)) return node.map((item, i) => substitute(item, [...path, i], env, problems));
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, substitute(v, [...path, k], env, problems)]));
  }
  return node;
}
