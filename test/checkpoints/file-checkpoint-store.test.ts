import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileCheckpointStore } from '../../src/checkpoints/file-checkpoint-store.js';

let dir: string;
let path: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cdc-sync-checkpoints-'));
  path = join(dir, 'state', 'checkpoints.json');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileCheckpointStore', () => {
  it('loads null for a stream when the file does not exist', async () => {
    const store = new FileCheckpointStore(path);
    expect(await store.load('clinic-to-cloud')).toBeNull();
  });

  it('loads null for a stream the file does not know', async () => {
    await new FileCheckpointStore(path).save('a', '1');
    expect(await new FileCheckpointStore(path).load('b')).toBeNull();
  });

  it('saves a position that a new instance reads back from the file', async () => {
    const before = Date.now();
    await new FileCheckpointStore(path).save('clinic-to-cloud', '0/16B3748');
    expect(await new FileCheckpointStore(path).load('clinic-to-cloud')).toBe('0/16B3748');
    const content = JSON.parse(await readFile(path, 'utf8'));
    expect(content.version).toBe(1);
    expect(content.streams['clinic-to-cloud'].position).toBe('0/16B3748');
    expect(Date.parse(content.streams['clinic-to-cloud'].updatedAt)).toBeGreaterThanOrEqual(before - 1000);
  });

  it('replaces the position of a stream on the next save', async () => {
    const store = new FileCheckpointStore(path);
    await store.save('s', '1');
    await store.save('s', '2');
    expect(await store.load('s')).toBe('2');
    expect(await new FileCheckpointStore(path).load('s')).toBe('2');
  });

  it('keeps two streams in one file', async () => {
    const store = new FileCheckpointStore(path);
    await store.save('forward', '100');
    await store.save('reverse', '2024-01-01T00:00:00Z|7');
    const fresh = new FileCheckpointStore(path);
    expect(await fresh.load('forward')).toBe('100');
    expect(await fresh.load('reverse')).toBe('2024-01-01T00:00:00Z|7');
  });

  it('keeps the other streams of an existing file', async () => {
    await new FileCheckpointStore(path).save('forward', '100');
    await new FileCheckpointStore(path).save('reverse', '5');
    const content = JSON.parse(await readFile(path, 'utf8'));
    expect(Object.keys(content.streams).sort()).toEqual(['forward', 'reverse']);
    expect(content.streams.forward.position).toBe('100');
  });

  it('serializes concurrent saves: the final file has every stream', async () => {
    const store = new FileCheckpointStore(path);
    await Promise.all([store.save('forward', '1'), store.save('reverse', '2'), store.save('third', '3'), store.save('forward', '4')]);
    const fresh = new FileCheckpointStore(path);
    expect(await fresh.load('forward')).toBe('4');
    expect(await fresh.load('reverse')).toBe('2');
    expect(await fresh.load('third')).toBe('3');
  });

  it('leaves no temporary file behind', async () => {
    const store = new FileCheckpointStore(path);
    await Promise.all([store.save('a', '1'), store.save('b', '2')]);
    await store.save('a', '3');
    expect(await readdir(join(dir, 'state'))).toEqual(['checkpoints.json']);
  });

  it('reads a file written by someone else', async () => {
    await new FileCheckpointStore(path).save('x', '0');
    await writeFile(path, JSON.stringify({ version: 1, streams: { s: { position: '42', updatedAt: '2024-01-01T00:00:00Z' } } }));
    expect(await new FileCheckpointStore(path).load('s')).toBe('42');
  });

  it('fails instead of starting over when the file is not JSON', async () => {
    await new FileCheckpointStore(path).save('x', '0');
    await writeFile(path, '{ torn');
    await expect(new FileCheckpointStore(path).load('x')).rejects.toThrow();
  });

  it('rejects a failed save but keeps saving afterwards', async () => {
    // A file where the folder should be: mkdir fails.
    const blocked = join(dir, 'blocked');
    const store = new FileCheckpointStore(join(blocked, 'checkpoints.json'));
    await writeFile(blocked, 'not a folder');
    await expect(store.save('s', '1')).rejects.toThrow();
    await rm(blocked);
    await store.save('s', '2');
    expect(await new FileCheckpointStore(join(blocked, 'checkpoints.json')).load('s')).toBe('2');
  });
});

describe('FileCheckpointStore after a crash', () => {
  it("removes the temporary file a killed process left between writing and renaming, but not a live process's", async () => {
    await new FileCheckpointStore(path).save('a', '1');
    // A pid that is gone: a child that has exited.
    const { spawnSync } = await import('node:child_process');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = `${path}.${gone}.tmp`;
    const live = `${path}.${process.ppid}.tmp`;
    const other = `${path}.backup.tmp`;
    for (const file of [stale, live, other]) await writeFile(file, '{"version":1,"streams":{"a":{"position":"torn"}}}');
    const store = new FileCheckpointStore(path);
    expect(await store.load('a')).toBe('1');
    const left = await readdir(join(dir, 'state'));
    expect(left).not.toContain(`checkpoints.json.${gone}.tmp`);
    expect(left).toEqual(expect.arrayContaining(['checkpoints.json', `checkpoints.json.${process.ppid}.tmp`, 'checkpoints.json.backup.tmp']));
  });
});
