import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { connectionConfig } from '../../src/db/mssql/client.js';
import { promtool } from '../grafana/support.js';
import {
  ContainerPaths,
  dependsOn,
  execForm,
  instructions,
  loadCompose,
  mounts,
  parseDockerfile,
  serviceEnv,
  stageEnv,
  type ComposeService,
} from './support.js';

/**
 * Docker cannot run here, so this checks what can be checked without it:
 * docker-compose.yml parses and every path it mounts or builds exists; the
 * Dockerfile builds what package.json runs; the image's start command, run
 * directly with the image's and the compose file's environment and mounts
 * mapped to this machine, works (`validate`, and the one-shot `init-sql`
 * service); the configuration files the stack mounts agree with each other.
 * `npm test` builds dist/ first.
 */
const compose = loadCompose();
const services = compose.services;
const stages = parseDockerfile(readFileSync('Dockerfile', 'utf8'));
const runtime = stages.at(-1)!;
const build = stages.find((s) => s.name === 'build')!;
const packageJson = JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string>; main: string; scripts: Record<string, string> };

afterAll(() => ContainerPaths.removeVolumes());

function service(name: string): ComposeService {
  const found = services[name];
  if (!found) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
}

/** ENTRYPOINT + CMD of the image, or the service's overrides (compose drops CMD when it sets entrypoint). */
function startCommand(s: ComposeService): string[] {
  const list = (v: string[] | string | undefined) => (v === undefined ? undefined : Array.isArray(v) ? v : v.split(/\s+/));
  const entrypoint = list(s.entrypoint) ?? execForm(instructions(runtime, 'ENTRYPOINT').at(-1)!);
  const command = list(s.command) ?? (s.entrypoint ? [] : execForm(instructions(runtime, 'CMD').at(-1)!));
  return [...entrypoint, ...command];
}

/** A container's environment: the image's ENV, then the service's, with container paths mapped. */
function containerEnv(s: ComposeService, paths: ContainerPaths): Record<string, string> {
  const env: Record<string, string> = { ...stageEnv(runtime), ...serviceEnv(s) };
  for (const [k, v] of Object.entries(env)) if (v.startsWith('/')) env[k] = paths.host(s, v) ?? v;
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir(), ...env };
}

function run(command: string[], env: Record<string, string>, cwd = process.cwd()) {
  const [file, ...args] = command;
  const result = spawnSync(file === 'node' ? process.execPath : file!, args, { env, cwd, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('docker-compose.yml', () => {
  it('has the stack of the issue, and every dependency is a service', () => {
    expect(Object.keys(services).sort()).toEqual(['cdc-sync', 'cdc-sync-setup', 'grafana', 'mssql', 'mssql-setup', 'postgres', 'prometheus']);
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys(dependsOn(s))) expect(Object.keys(services), `${name} depends on ${dep}`).toContain(dep);
    }
    // One-shots run to completion before what needs them.
    expect(dependsOn(service('mssql-setup'))).toEqual({ mssql: 'service_healthy', 'cdc-sync-setup': 'service_completed_successfully' });
    expect(dependsOn(service('cdc-sync'))).toEqual({ 'mssql-setup': 'service_completed_successfully', postgres: 'service_healthy' });
    for (const oneShot of ['cdc-sync-setup', 'mssql-setup']) expect(service(oneShot).restart).toBe('no');

    const mssql = serviceEnv(service('mssql'));
    expect(service('mssql').image).toMatch(/^mcr\.microsoft\.com\/mssql\/server:2022/);
    expect(mssql).toMatchObject({ ACCEPT_EULA: 'Y', MSSQL_AGENT_ENABLED: 'true' });
    expect(service('postgres').image).toBe('postgres:15');
    expect(service('postgres').command).toEqual(expect.arrayContaining(['-c', 'wal_level=logical']));
  });

  it('mounts and builds only paths that exist in the repository; named volumes are declared', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build !== undefined) {
        const context = typeof s.build === 'string' ? s.build : s.build.context;
        const dockerfile = typeof s.build === 'string' ? 'Dockerfile' : (s.build.dockerfile ?? 'Dockerfile');
        expect(existsSync(join(context, dockerfile)), `${name}: ${context}/${dockerfile}`).toBe(true);
      }
      for (const m of mounts(s)) {
        if (m.bind) expect(existsSync(m.source), `${name} mounts ${m.source}`).toBe(true);
        else expect(Object.keys(compose.volumes ?? {}), `${name} uses volume ${m.source}`).toContain(m.source);
      }
    }
  });

  it('gives cdc-sync URLs of the compose services with their credentials', () => {
    const env = serviceEnv(service('cdc-sync'));
    const mssql = connectionConfig(env.MSSQL_URL!, 'test') as { server: string; port: number; database: string; user: string; password: string };
    expect(mssql).toMatchObject({ server: 'mssql', port: 1433, database: 'Clinic', user: 'sa', password: serviceEnv(service('mssql')).MSSQL_SA_PASSWORD });
    expect(serviceEnv(service('mssql-setup')).SQLCMDPASSWORD).toBe(mssql.password);
    const sink = new URL(env.SINK_URL!);
    const postgres = serviceEnv(service('postgres'));
    expect([sink.hostname, sink.port, sink.pathname, decodeURIComponent(sink.password)]).toEqual(['postgres', '5432', `/${postgres.POSTGRES_DB}`, postgres.POSTGRES_PASSWORD]);
    // The one-shot init-sql service reads the same configuration.
    expect(serviceEnv(service('cdc-sync-setup'))).toEqual(env);
  });
});

describe('Dockerfile', () => {
  it('builds in a stage with dev dependencies and runs on node:20-slim with production dependencies only, native addons built', () => {
    expect(stages).toHaveLength(2);
    expect(build.base).toBe('node:20-slim');
    const runs = instructions(build, 'RUN');
    // Compilers for better-sqlite3's addon, then install with scripts (the addon is built), build, and drop the dev dependencies.
    expect(runs[0]).toMatch(/apt-get install -y --no-install-recommends python3 make g\+\+/);
    expect(runs.slice(1)).toEqual(['npm ci', 'npm run build', 'npm prune --omit=dev && npm cache clean --force']);
    expect(runtime.base).toBe('node:20-slim');
    expect(instructions(runtime, 'RUN').some((r) => /npm (ci|install)/.test(r))).toBe(false);
    // The bundled CLI and the pruned node_modules (with the built addon) come from the build stage.
    expect(instructions(runtime, 'COPY').filter((c) => c.startsWith('--from='))).toEqual([
      '--from=build /app/node_modules ./node_modules',
      '--from=build /app/dist/cdc-sync.mjs /app/dist/cdc-sync.cjs /app/dist/cdc-sync.cjs.map ./dist/',
    ]);
    expect(packageJson.scripts.build).toContain('node tools/bundle.mjs');
    expect(instructions(build, 'COPY')).toContain('tools/bundle.mjs tools/launcher.mjs ./tools/');
  });

  it('copies everything tsconfig.build.json compiles, and nothing .dockerignore leaves out', () => {
    const tsconfig = JSON.parse(readFileSync('tsconfig.build.json', 'utf8')) as { include: string[] };
    const copied = instructions(build, 'COPY').flatMap((c) => c.split(/\s+/).slice(0, -1));
    for (const include of tsconfig.include) {
      expect(copied.some((c) => include === c || include.startsWith(`${c}/`)), `${include} is copied into the build stage`).toBe(true);
    }
    const ignored = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const stage of stages) {
      for (const copy of instructions(stage, 'COPY').filter((c) => !c.startsWith('--from='))) {
        for (const source of copy.split(/\s+/).slice(0, -1)) {
          expect(existsSync(source), `COPY ${source}`).toBe(true);
          expect(ignored, `${source} is in .dockerignore`).not.toContain(source);
        }
      }
    }
  });

  it('the runtime stage has every package the compiled CLI imports (npm ci --omit=dev)', () => {
    const dependencies = Object.keys((JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> }).dependencies);
    const files = (readdirSync('dist/src', { recursive: true }) as string[]).filter((f) => f.endsWith('.js'));
    const missing = new Set<string>();
    for (const file of files) {
      const code = readFileSync(join('dist/src', file), 'utf8');
      // Static imports/exports at the start of a line, and import('…') or importModule('…'): not "from" inside SQL or strings.
      const specifiers = [
        ...code.matchAll(/^(?:import\s[^;]*?|export\s*(?:\*|\{[^}]*\})\s*)\bfrom\s*['"]([^'"]+)['"]/gm),
        ...code.matchAll(/\b(?:import|importModule)\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
      ];
      for (const [, specifier] of specifiers) {
        if (specifier!.startsWith('.') || specifier!.startsWith('node:')) continue;
        const name = specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!;
        if (!dependencies.includes(name)) missing.add(`${file}: ${specifier}`);
      }
    }
    expect(files.length).toBeGreaterThan(10);
    expect([...missing]).toEqual([]);
    // The bundle leaves only native addons and the lazily loaded drivers to node_modules: all production dependencies.
    const bundle = readFileSync('dist/cdc-sync.cjs', 'utf8');
    const external = new Set<string>();
    // What esbuild leaves for Node.js to resolve: its require() of the externals our ES modules import, and what importModule()
    // loads on first use. (Plain require("…") is also in code that fastify and ajv generate as strings.)
    for (const [, specifier] of bundle.matchAll(/\b(?:__toESM\(require|importModule)\(\s*['"]([^'"./][^'"]*)['"]/gm)) {
      if (specifier!.startsWith('node:')) continue;
      external.add(specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!);
    }
    const builtins = new Set(builtinModules);
    const packages = [...external].filter((name) => !builtins.has(name));
    // pg and ws try these optional native helpers inside try/catch and do without them.
    const optional = ['pg-native', 'bufferutil', 'utf-8-validate'];
    expect(packages.filter((name) => !dependencies.includes(name) && !optional.includes(name))).toEqual([]);
    expect(packages).toEqual(expect.arrayContaining(['better-sqlite3', 'mssql', '@supabase/supabase-js', '@electric-sql/pglite']));
  });

  it('runs the built CLI of package.json as the unprivileged node user under tini, with a health check on /healthz', () => {
    expect(instructions(runtime, 'USER')).toEqual(['node']);
    expect(instructions(runtime, 'EXPOSE')).toEqual(['9464']);
    expect(instructions(runtime, 'RUN').some((r) => /apt-get install -y --no-install-recommends tini/.test(r))).toBe(true);
    const entrypoint = execForm(instructions(runtime, 'ENTRYPOINT')[0]!);
    expect(entrypoint.slice(0, 3)).toEqual(['/usr/bin/tini', '--', 'node']);
    expect(execForm(instructions(runtime, 'CMD')[0]!)).toEqual(['run']);
    // /app/dist/cdc-sync.mjs in the image is dist/cdc-sync.mjs here: the bin and main of package.json.
    const cli = new ContainerPaths().host({}, entrypoint[3]!);
    expect(cli).toBe(resolve(packageJson.bin['cdc-sync']!));
    expect(resolve(packageJson.main)).toBe(cli);
    expect(statSync(cli!).isFile()).toBe(true);
    // The bin starts node with the options the image sets: the kernel hands env the shebang's rest as one argument, -S splits it.
    const shebang = readFileSync(cli!, 'utf8').split('\n')[0]!;
    expect(shebang).toBe('#!/usr/bin/env -S node --max-semi-space-size=8');
    const help = execFileSync('/usr/bin/env', [shebang.slice('#!/usr/bin/env '.length), cli!, '--help'], { encoding: 'utf8' });
    expect(help).toContain('Usage: cdc-sync');

    const env = stageEnv(runtime);
    expect(env).toMatchObject({ CDC_SYNC_CONFIG: '/etc/cdc-sync/cdc-sync.yaml', NODE_OPTIONS: '--max-old-space-size=160 --max-semi-space-size=8' });
    const healthcheck = instructions(runtime, 'HEALTHCHECK')[0]!;
    expect(healthcheck).toMatch(/--interval=\S+ --timeout=\S+ --start-period=\S+ --retries=\d+ CMD \[/);
    expect(env.CDC_SYNC_HEALTHCHECK_URL).toBe('http://127.0.0.1:9464/healthz');
  });

  it('HEALTHCHECK answers 0 when /healthz answers 200, else 1 (no curl in the slim image: node fetch)', async () => {
    const command = execForm(instructions(runtime, 'HEALTHCHECK')[0]!.replace(/^.*?CMD\s+/, ''));
    expect(command[0]).toBe('node');
    let status = 200;
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? status : 404;
      res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const check = (url: string) => {
      const env = { ...stageEnv(runtime), PATH: process.env.PATH ?? '', CDC_SYNC_HEALTHCHECK_URL: url };
      const [, ...args] = command;
      // Asynchronous: the stub server answers from this process.
      return new Promise<number | null>((done) => spawn(process.execPath, args, { env, stdio: 'ignore' }).on('exit', (code) => done(code)));
    };
    try {
      expect(await check(`http://127.0.0.1:${port}/healthz`)).toBe(0);
      status = 503;
      expect(await check(`http://127.0.0.1:${port}/healthz`)).toBe(1);
      expect(await check(`http://127.0.0.1:${port}/nothing`)).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(await check('http://127.0.0.1:1/healthz')).toBe(1);
  });
});

describe('the image start command, run directly with the compose environment', () => {
  it('cdc-sync: the configuration it mounts is valid with its environment (CDC_SYNC_CONFIG, NODE_OPTIONS of the image)', () => {
    const s = service('cdc-sync');
    const paths = new ContainerPaths();
    const command = startCommand(s);
    expect(command).toEqual(['/usr/bin/tini', '--', 'node', '/app/dist/cdc-sync.mjs', 'run']);
    const env = containerEnv(s, paths);
    expect(env.CDC_SYNC_CONFIG).toBe(resolve('examples/clinic/cdc-sync.yaml'));
    // The same command with `validate --offline` for `run` (both would wait for SQL Server): no --config, as in the container.
    const node = command.slice(2, -1).map((part) => paths.rewrite(s, part));
    const result = run([...node, 'validate', '--offline'], env);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${env.CDC_SYNC_CONFIG}: valid, checked the file only (clinic-to-cloud, cloud-to-clinic)\n`);
  });

  it('cdc-sync-setup writes the init-sql set-up into the volume mssql-setup applies from, with every script it names', () => {
    const paths = new ContainerPaths();
    const setup = service('cdc-sync-setup');
    const command = startCommand(setup);
    expect(command.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    const result = run(['/bin/sh', '-c', paths.rewrite(setup, command[2]!)], containerEnv(setup, paths));
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);

    const apply = service('mssql-setup');
    const script = (Array.isArray(apply.command) ? apply.command : [apply.command!]).join('\n');
    expect(apply.entrypoint).toEqual(['/bin/bash', '-c']);
    expect(spawnSync('bash', ['-n', '-c', script]).status, 'bash syntax of the mssql-setup script').toBe(0);
    const referenced = [...script.matchAll(/\/setup\/[^\s"';]+/g)].map((m) => m[0]);
    expect(referenced).toEqual(['/setup/clinic/mssql-init.sql', '/setup/sql/cdc/*.sql', '/setup/generated/cdc-sync-setup.sql']);
    for (const path of referenced) {
      const host = paths.host(apply, path, false)!;
      const files = basename(host).includes('*') ? readdirSync(dirname(host)).filter((f) => f.endsWith('.sql')) : [basename(host)];
      expect(files.length, path).toBeGreaterThan(0);
      for (const f of files) expect(existsSync(join(dirname(host), f)), `${path} → ${host}`).toBe(true);
    }
    const generated = readFileSync(paths.host(apply, '/setup/generated/cdc-sync-setup.sql', false)!, 'utf8');
    expect(generated).toContain('EXEC sys.sp_cdc_enable_db');
    for (const table of ['AlignerDoctors', 'tblPatients', 'tblWork', 'tblAlignerSets', 'tblAlignerBatches', 'tblAlignerNotes']) {
      expect(generated).toContain(`@source_name = N'${table}'`);
    }
    // No credentials in the printed set-up.
    expect(generated).not.toContain(serviceEnv(service('mssql')).MSSQL_SA_PASSWORD);
    // Applied to the database of MSSQL_URL.
    expect(script).toContain('-d Clinic -i /setup/generated/cdc-sync-setup.sql');
  });
});

describe('Prometheus and Grafana configuration', () => {
  it('Prometheus scrapes cdc-sync at its port and loads the rule file from where compose mounts it', () => {
    const prometheus = service('prometheus');
    const configMount = mounts(prometheus).find((m) => m.target === '/etc/prometheus/prometheus.yml')!;
    const config = parse(readFileSync(configMount.source, 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    expect(config.scrape_configs).toEqual([{ job_name: 'cdc-sync', static_configs: [{ targets: ['cdc-sync:9464'] }] }]);
    expect(config.rule_files).toHaveLength(1);
    const rules = mounts(prometheus).find((m) => m.target === config.rule_files[0]);
    expect(rules?.source).toBe('./grafana/alerts/cdc-sync.rules.yml');

    // promtool accepts the configuration, with the rule file where it is in this repository.
    const dir = mkdtempSync(join(tmpdir(), 'cdc-sync-prometheus-'));
    const copy = join(dir, 'prometheus.yml');
    writeFileSync(copy, readFileSync(configMount.source, 'utf8').replace(config.rule_files[0]!, resolve(rules!.source)));
    const checked = promtool(['check', 'config', copy]);
    rmSync(dir, { recursive: true, force: true });
    expect(checked.status, checked.output).toBe(0);
  });

  it('Grafana provisions the Prometheus service as datasource and the dashboards from where compose mounts them', () => {
    const grafana = service('grafana');
    const provisioning = mounts(grafana).find((m) => m.target === '/etc/grafana/provisioning')!;
    expect(provisioning.source).toBe('./grafana/provisioning');
    const datasources = parse(readFileSync(join(provisioning.source, 'datasources/prometheus.yml'), 'utf8')) as { datasources: { type: string; url: string }[] };
    expect(datasources.datasources).toMatchObject([{ type: 'prometheus', url: 'http://prometheus:9090' }]);
    const providers = parse(readFileSync(join(provisioning.source, 'dashboards/cdc-sync.yml'), 'utf8')) as { providers: { type: string; options: { path: string } }[] };
    const path = providers.providers[0]!.options.path;
    const dashboards = mounts(grafana).find((m) => m.target === path);
    expect(dashboards?.source).toBe('./grafana/dashboards');
    expect(readdirSync(dashboards!.source)).toContain('cdc-sync.json');
    expect(serviceEnv(grafana).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(`${path}/cdc-sync.json`);
  });
});
