import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { parse } from 'yaml';

/** One instruction of a Dockerfile, continuation lines joined, comments dropped. */
export interface Instruction {
  op: string;
  args: string;
}
export interface Stage {
  base: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Enough of a Dockerfile parser for our own Dockerfile: stages and their instructions. */
export function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim());
    current = '';
  }
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, op, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const instruction = { op: op!.toUpperCase(), args: args! };
    if (instruction.op === 'FROM') {
      const [base, as, name] = instruction.args.split(/\s+/);
      stages.push({ base: base!, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

export function instructions(stage: Stage, op: string): string[] {
  return stage.instructions.filter((i) => i.op === op).map((i) => i.args);
}

/** ENV A=b C=d, in order; later ones win. */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const args of instructions(stage, 'ENV')) {
    // KEY=value pairs; a value in double quotes may hold spaces (Docker's ENV key=value form).
    for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("((?:[^"\\]|\\.)*)"|\S*)/g)) {
      env[match[1]!] = match[3] !== undefined ? match[3].replace(/\\(.)/g, '$1') : match[2]!;
    }
  }
  return env;
}

/** The exec form (JSON array) of ENTRYPOINT / CMD / HEALTHCHECK ... CMD. */
export function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  const value = JSON.parse(json) as unknown;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`not an exec form: ${args}`);
  return value as string[];
}

/**
 * Docker Compose variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}
 * and $$ for a literal $. With an empty environment every default applies.
 */
export function interpolate(text: string, env: Record<string, string | undefined> = {}): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (match, braced, kind, fallback, bare) => {
    if (match === '$$') return '$';
    const name = (braced ?? bare) as string;
    const value = env[name];
    if (kind === ':-') return value ? value : (fallback as string);
    if (kind === '-') return value ?? (fallback as string);
    return value ?? '';
  });
}

function interpolateDeep(node: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof node === 'string') return interpolate(node, env);
  if (Array.isArray(node)) return node.map((n) => interpolateDeep(n, env));
  if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateDeep(v, env)]));
  return node;
}

export interface ComposeService {
  image?: string;
  build?: string | { context: string; dockerfile?: string };
  entrypoint?: string[] | string;
  command?: string[] | string;
  environment?: Record<string, string> | string[];
  volumes?: string[];
  depends_on?: string[] | Record<string, { condition: string }>;
  ports?: string[];
  restart?: string;
  healthcheck?: { test?: string[] | string; disable?: boolean };
}
export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** docker-compose.yml with YAML anchors resolved and ${VAR:-default} interpolated from `env`. */
export function loadCompose(env: Record<string, string | undefined> = {}): ComposeFile {
  return interpolateDeep(parse(readFileSync('docker-compose.yml', 'utf8')), env) as ComposeFile;
}

export function serviceEnv(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
}

export function dependsOn(service: ComposeService): Record<string, string> {
  const deps = service.depends_on ?? [];
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, 'service_started']));
  return Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, v.condition]));
}

export interface Mount {
  source: string;
  target: string;
  bind: boolean;
}

/** Short volume syntax: `./host:/container[:ro]` (bind) or `name:/container[:ro]` (named volume). */
export function mounts(service: ComposeService): Mount[] {
  return (service.volumes ?? []).map((v) => {
    const [source, target] = v.split(':');
    return { source: source!, target: target!, bind: source!.startsWith('.') || source!.startsWith('/') };
  });
}

/**
 * Maps paths inside a container to this machine: bind mounts to the
 * repository, named volumes to a temporary directory per volume (shared
 * between services, as Docker shares them), and the image's WORKDIR /app
 * (package.json, dist/, sql/) to the repository root.
 */
export class ContainerPaths {
  private readonly volumes = new Map<string, string>();
  private static readonly created: string[] = [];

  /** Removes the volume directories of every ContainerPaths (afterAll). */
  static removeVolumes(): void {
    for (const dir of ContainerPaths.created.splice(0)) rmSync(dir, { recursive: true, force: true });
  }

  constructor(private readonly workdir = '/app') {}

  volume(name: string): string {
    let dir = this.volumes.get(name);
    if (!dir) {
      dir = mkdtempSync(join(tmpdir(), `cdc-sync-volume-${name}-`));
      this.volumes.set(name, dir);
      ContainerPaths.created.push(dir);
    }
    return dir;
  }

  /** The host path of `path` in `service`'s container, or null when nothing maps it. */
  host(service: ComposeService, path: string, useImage = true): string | null {
    const candidates = mounts(service)
      .filter((m) => path === m.target || path.startsWith(`${m.target}/`))
      .sort((a, b) => b.target.length - a.target.length);
    const mount = candidates[0];
    if (mount) {
      const root = mount.bind ? resolve(mount.source) : this.volume(mount.source);
      return join(root, posix.relative(mount.target, path));
    }
    if (useImage && (path === this.workdir || path.startsWith(`${this.workdir}/`))) return resolve(posix.relative(this.workdir, path));
    return null;
  }

  /** Rewrites every absolute container path in a command line that a mount or the image maps. */
  rewrite(service: ComposeService, text: string, useImage = true): string {
    return text.replace(/(?<![\w.])\/[A-Za-z0-9_.*/-]+/g, (path) => this.host(service, path, useImage) ?? path);
  }
}
