import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig, type Environment } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';

/** A minimal valid configuration; `extra` lines go into the first stream. */
function yaml(options: { name?: string; url?: string; extra?: string; tail?: string } = {}): string {
  return [
    'streams:',
    `  - name: ${options.name ?? 'clinic-to-cloud'}`,
    '    source:',
    '      type: postgres-changelog',
    `      url: ${options.url ?? 'postgres://localhost/clinic'}`,
    '    sink:',
    '      type: postgres',
    '      url: postgres://localhost/cloud',
    '    tables:',
    '      - source: dbo.tblPatients',
    '        target: public.patients',
    ...(options.extra ? [options.extra] : []),
    ...(options.tail ? [options.tail] : []),
    '',
  ].join('\n');
}

function configError(text: string, env: Environment = {}): ConfigError {
  try {
    parseConfig(text, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('gives a postgres-wal stream batches of 10,000 changes unless configured, every other source 1,000', () => {
    const wal = (extra?: string) => parseConfig(yaml({ extra }).replace('type: postgres-changelog', 'type: postgres-wal'), {}).streams[0]!.batch;
    expect(wal()).toEqual({ maxSize: 10_000, maxWaitMs: 100 });
    expect(wal('    batch: { maxSize: 500 }')).toEqual({ maxSize: 500, maxWaitMs: 100 });
    expect(parseConfig(yaml({ extra: '    batch: { maxWaitMs: 5 }' }), {}).streams[0]!.batch).toEqual({ maxSize: 1000, maxWaitMs: 5 });
    expect(parseConfig(yaml().replace('type: postgres-changelog', 'type: postgres-wal'), { SYNC_BATCH_SIZE: '50' }).streams[0]!.batch.maxSize).toBe(50);
  });

  it('fills in the defaults', () => {
    const config = parseConfig(yaml(), {});
    const stream = config.streams[0]!;
    expect(stream.batch).toEqual({ maxSize: 1000, maxWaitMs: 100 });
    expect(stream.retry).toEqual({ attempts: 10, minDelayMs: 200, maxDelayMs: 30_000 });
    expect(stream.direction).toBe('forward');
    // Unset: the newer change wins by change time (see TableMapping.byChangeTime).
    expect(stream.tables[0]!.conflict).toBeUndefined();
    expect(stream.prefer).toBeUndefined();
    expect(config.http.port).toBe(9464);
    expect(config.checkpoints.store).toBe('auto');
    expect(config.checkpoints.path).toBe('./data/checkpoints.json');
  });

  it('refuses two streams of a pair that would give a tie of change times to different sides', () => {
    const reverse = (extra: string) =>
      [
        '  - name: cloud-to-clinic',
        extra,
        '    source: { type: postgres-changelog, url: "postgres://localhost/cloud" }',
        '    sink: { type: postgres, url: "postgres://localhost/clinic" }',
        '    tables: [{ source: public.patients, target: dbo.tblPatients }]',
      ]
        .filter(Boolean)
        .join('\n');
    expect(configError(yaml({ tail: reverse('') })).message).toMatch(/streams\[1\]\.prefer: streams\[0\] \("clinic-to-cloud"\) runs the other way/);
    expect(() => parseConfig(yaml({ tail: reverse('    direction: reverse') }), {})).not.toThrow();
    expect(() => parseConfig(yaml({ tail: reverse('    prefer: sink') }), {})).not.toThrow();
  });

  it('asks for tombstones when a Supabase project is written and read back (two-way)', () => {
    const pair = (tombstones: boolean) =>
      [
        'streams:',
        '  - name: clinic-to-portal',
        '    source: { type: postgres-changelog, url: "postgres://localhost/clinic" }',
        '    sink: { type: supabase, url: "https://p.supabase.co", key: k }',
        '    tables: [{ source: public.notes, target: public.notes }]',
        '  - name: portal-to-clinic',
        '    direction: reverse',
        `    source: { type: supabase-realtime, url: "https://p.supabase.co", key: k, tombstones: ${tombstones} }`,
        '    sink: { type: postgres, url: "postgres://localhost/clinic" }',
        '    tables: [{ source: public.notes, target: public.notes, updatedAt: updated_at }]',
        '',
      ].join('\n');
    expect(configError(pair(false)).message).toMatch(/streams\[1\]\.source\.tombstones: streams\[0\] writes into this Supabase project/);
    expect(() => parseConfig(pair(true), {})).not.toThrow();
  });

  it('takes nats sinks and sources with their JetStream settings, and names a bad subject prefix by its key path', () => {
    const text = [
      'streams:',
      '  - name: clinic-to-nats',
      '    source: { type: postgres-changelog, url: postgres://localhost/clinic }',
      '    sink: { type: nats, url: "nats://n1:4222,nats://n2:4222", nats: { stream: CLINIC, replicas: 3 } }',
      '    tables: [{ source: public.patients }]',
      '  - name: nats-to-cloud',
      '    source: { type: nats, url: "nats://n1:4222", nats: { stream: CLINIC, from: clinic-to-nats } }',
      '    sink: { type: postgres, url: postgres://localhost/cloud }',
      '    tables: [{ source: public.patients, target: public.patients }]',
      '',
    ].join('\n');
    const config = parseConfig(text, {});
    expect(config.streams[0]!.sink.nats).toEqual({ stream: 'CLINIC', subjectPrefix: 'cdc', replicas: 3, duplicateWindowSeconds: 120, partitions: 1, transactions: false });
    expect(config.streams[1]!.source.nats).toMatchObject({ stream: 'CLINIC', from: 'clinic-to-nats' });
    const error = configError(text.replace('replicas: 3', 'subjectPrefix: "cdc.>"'));
    expect(error.message).toContain('streams[0].sink.nats.subjectPrefix');
  });

  it('keeps values given in the file', () => {
    const config = parseConfig(yaml({ extra: '    batch: { maxSize: 50 }\n    retry: { attempts: 3 }', tail: 'http: { port: 8080 }\ncheckpoints: { store: file, path: /tmp/c.json }' }), {});
    expect(config.streams[0]!.batch).toEqual({ maxSize: 50, maxWaitMs: 100 });
    expect(config.streams[0]!.retry).toEqual({ attempts: 3, minDelayMs: 200, maxDelayMs: 30_000 });
    expect(config.http.port).toBe(8080);
    expect(config.checkpoints).toEqual({ store: 'file', path: '/tmp/c.json' });
  });

  it('replaces ${VAR} from the environment', () => {
    const config = parseConfig(yaml({ url: 'postgres://${DB_USER}@${DB_HOST}/clinic' }), { DB_USER: 'sync', DB_HOST: 'db.local' });
    expect(config.streams[0]!.source.url).toBe('postgres://sync@db.local/clinic');
  });

  it('uses the default of ${VAR:-default} when the variable is unset or empty', () => {
    const text = yaml({ url: '${SOURCE_URL:-postgres://fallback/db}' });
    expect(parseConfig(text, {}).streams[0]!.source.url).toBe('postgres://fallback/db');
    expect(parseConfig(text, { SOURCE_URL: '' }).streams[0]!.source.url).toBe('postgres://fallback/db');
    expect(parseConfig(text, { SOURCE_URL: 'postgres://set/db' }).streams[0]!.source.url).toBe('postgres://set/db');
  });

  it('turns a whole-value ${VAR} holding a number into a number', () => {
    const config = parseConfig(yaml({ tail: 'http:\n  port: ${PORT}' }), { PORT: '9000' });
    expect(config.http.port).toBe(9000);
  });

  it('names the key path of a missing variable', () => {
    const error = configError(yaml({ url: '${MSSQL_URL}' }));
    expect(error.message).toContain('streams[0].source.url');
    expect(error.message).toContain('MSSQL_URL');
  });

  it('lists every missing variable', () => {
    const error = configError(yaml({ url: '${A}', tail: 'http:\n  token: ${B}' }));
    expect(error.message).toContain('streams[0].source.url: environment variable A');
    expect(error.message).toContain('http.token: environment variable B');
  });

  it('names the path of an unknown key', () => {
    const inStream = configError(yaml({ extra: '    sourse: oops' }));
    expect(inStream.message).toContain('streams[0]');
    expect(inStream.message).toContain('sourse');
    const inTable = configError(yaml({ extra: '        colums: { A: a }' }));
    expect(inTable.message).toContain('streams[0].tables[0]');
    expect(inTable.message).toContain('colums');
    const topLevel = configError(yaml({ tail: 'bogus: 1' }));
    expect(topLevel.message).toContain('bogus');
  });

  it('rejects duplicate stream names, naming the second one', () => {
    const second = yaml({ name: 'dup' }).replace('streams:\n', '');
    const error = configError(yaml({ name: 'dup' }) + second);
    expect(error.message).toContain('streams[1].name');
    expect(error.message).toContain('duplicate stream name "dup"');
  });

  it('refuses truncate: apply for a sink that cannot empty a table, naming the key path', () => {
    const supabase = yaml().replace('type: postgres-changelog', 'type: postgres-wal\n      truncate: apply').replace('type: postgres\n', 'type: supabase\n');
    expect(configError(supabase).message).toMatch(/streams\[0\]\.source\.truncate.*"apply" needs a postgres or sqlite sink \(this stream's sink is supabase\)/s);
    const postgres = parseConfig(yaml().replace('type: postgres-changelog', 'type: postgres-wal\n      truncate: apply'), {});
    expect(postgres.streams[0]!.source.truncate).toBe('apply');
  });

  it('names the key path of a value of the wrong type or out of range', () => {
    expect(configError(yaml({ extra: '    batch: { maxSize: 0 }' })).message).toContain('streams[0].batch.maxSize');
    expect(configError(yaml({ tail: 'http: { port: 70000 }' })).message).toContain('http.port');
    expect(configError(yaml({ extra: '        conflict: newest' })).message).toContain('streams[0].tables[0].conflict');
  });

  it('names a missing required key and says what to write there, not the validator\'s words', () => {
    const text = yaml().replace('      url: postgres://localhost/cloud\n', '');
    expect(configError(text).message).toMatch(/streams\[0\]\.sink\.url: missing; write url: "…" \(the connection URL/);
    const noSource = configError('streams:\n  - name: x\n    sink: { type: postgres, url: "postgres://x" }\n    tables: [{ target: a }]\n');
    expect(noSource.message).toMatch(/streams\[0\]\.source: missing; write source: \{ type: mssql-cdc, url: .*\(the database changes are read from\)/);
    expect(noSource.message).toMatch(/streams\[0\]\.tables\[0\]\.source: missing; write source: dbo\.tblPatients \(the table changes are read from\)/);
    expect(configError('streams:\n  - name: x\n    source: { url: "postgres://y" }\n').message).toMatch(/streams\[0\]\.source\.type: missing; write type: one of mssql-cdc, .*postgres-changelog/);
    expect(noSource.message).not.toMatch(/received undefined/);
  });

  it('refuses a postgres-wal pair that would resolve by change time, per table of both streams, and takes updatedAt or source-wins', () => {
    const pair = (forward: string, back: string) => `streams:
  - name: a-to-b
    source: { type: postgres-wal, url: "postgres://h/a" }
    sink: { type: postgres, url: "postgres://h/b" }
    tables: [${forward}]
  - name: b-to-a
    direction: reverse
    source: { type: postgres-changelog, url: "postgres://h/b" }
    sink: { type: postgres, url: "postgres://h/a" }
    tables: [${back}]
`;
    const byColumn = '{ source: public.items, conflict: newer-wins, updatedAt: updated_at }';
    const error = configError(pair('{ source: public.items }', `${byColumn}, { source: public.notes }`));
    expect(error.message).toContain('streams[0].tables[0].updatedAt: streams[0] ("a-to-b") reads with postgres-wal the database streams[1] ("b-to-a") writes into');
    expect(error.message).toContain('streams[1].tables[1].updatedAt');
    expect(error.message).not.toContain('streams[1].tables[0]');
    // updatedAt alone keeps the change-time rule (conflict unset): refused too.
    expect(configError(pair('{ source: public.items, updatedAt: updated_at }', byColumn)).message).toContain('streams[0].tables[0].updatedAt');
    expect(parseConfig(pair(byColumn, byColumn), {}).streams).toHaveLength(2);
    expect(parseConfig(pair('{ source: public.items, conflict: source-wins }', '{ source: public.items, conflict: source-wins }'), {}).streams).toHaveLength(2);
    // Both sides read with postgres-wal: each table named once.
    const bothWal = configError(pair('{ source: public.items }', '{ source: public.items }').replace('type: postgres-changelog, url: "postgres://h/b"', 'type: postgres-wal, url: "postgres://h/b"'));
    expect(bothWal.message.match(/streams\[0\]\.tables\[0\]\.updatedAt/g)).toHaveLength(1);
    expect(bothWal.message.match(/streams\[1\]\.tables\[0\]\.updatedAt/g)).toHaveLength(1);
    // One way, or the way back into another database: nothing to refuse.
    expect(parseConfig(pair('{ source: public.items }', '{ source: public.items }').replace('url: "postgres://h/a" }\n    tables: [{ source: public.items }]\n', 'url: "postgres://h/c" }\n    tables: [{ source: public.items }]\n'), {}).streams).toHaveLength(2);
  });

  it('rejects text that is not YAML', () => {
    expect(configError('streams: [\n').message).toMatch(/not valid YAML/);
  });

  describe('SYNC_BATCH_SIZE (older scripts)', () => {
    it('sets batch.maxSize when the file does not', () => {
      expect(parseConfig(yaml(), { SYNC_BATCH_SIZE: '50' }).streams[0]!.batch).toEqual({ maxSize: 50, maxWaitMs: 100 });
      expect(parseConfig(yaml({ extra: '    batch: { maxWaitMs: 20 }' }), { SYNC_BATCH_SIZE: '50' }).streams[0]!.batch).toEqual({
        maxSize: 50,
        maxWaitMs: 20,
      });
    });

    it('loses to batch.maxSize in the file', () => {
      expect(parseConfig(yaml({ extra: '    batch: { maxSize: 7 }' }), { SYNC_BATCH_SIZE: '50' }).streams[0]!.batch.maxSize).toBe(7);
    });

    it('is ignored when it is not an integer', () => {
      expect(parseConfig(yaml(), { SYNC_BATCH_SIZE: 'lots' }).streams[0]!.batch.maxSize).toBe(1000);
    });
  });
});

describe('loadConfigFile', () => {
  it('reads a file and names it in errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cdc-sync-config-'));
    try {
      const good = join(dir, 'good.yaml');
      await writeFile(good, yaml({ url: '${URL}' }));
      expect(loadConfigFile(good, { URL: 'postgres://x/y' }).streams[0]!.source.url).toBe('postgres://x/y');
      const bad = join(dir, 'bad.yaml');
      await writeFile(bad, yaml({ extra: '    extra: 1' }));
      expect(() => loadConfigFile(bad, {})).toThrow(new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: streams\\[0\\]`));
      expect(() => loadConfigFile(join(dir, 'missing.yaml'), {})).toThrow(ConfigError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('keeps a numeric ${VAR} as text where the schema wants text, and as a number where it wants one', () => {
    const text = `streams:
  - name: \${STREAM_NAME}
    source: { type: postgres-changelog, url: postgres://a/b }
    sink: { type: postgres, url: postgres://c/d }
    tables: [{ source: dbo.t, target: public.t }]
http:
  port: \${PORT}
  token: \${CDC_SYNC_API_TOKEN}
`;
    const config = parseConfig(text, { CDC_SYNC_API_TOKEN: '0123456789', STREAM_NAME: '2024', PORT: '9100' });
    expect(config.http.token).toBe('0123456789');
    expect(config.streams[0]!.name).toBe('2024');
    expect(config.http.port).toBe(9100);
  });
});
