import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { applyLegacyEnvironment } from './legacy-env.js';
import { configSchema, type Config } from './schema.js';

export type Environment = Record<string, string | undefined>;

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
  const result = configSchema.safeParse(applyLegacyEnvironment(substituted, env));
  if (!result.success) throw new ConfigError(`${source}: ${formatIssues(result.error.issues)}`);
  return result.data;
}

/** `streams[0].sink.url` */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

function formatIssues(issues: ReadonlyArray<z.core.$ZodIssue>): string {
  return issues.map((issue) => `${formatPath(issue.path) || '(top level)'}: ${issue.message}`).join('; ');
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
