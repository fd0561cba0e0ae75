import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileDeadLetterStore } from '../../src/dead-letters/file-dead-letter-store.js';
import type { DeadLetter } from '../../src/sinks/sink.js';

let dir: string;
let path: string;
const letter = (n: number): DeadLetter => ({
  stream: 's',
  table: 'public.items',
  key: { id: n },
  payload: `{"op":"insert","row":{"id":${n}}}`,
  error: 'new row violates check constraint',
  reason: 'constraint',
  position: String(n),
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cdc-sync-dead-letters-'));
  path = join(dir, 'data', 'dead-letters.jsonl');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileDeadLetterStore', () => {
  it('appends one JSON line per dead letter, creating the folder, and reads them back in order', async () => {
    const store = new FileDeadLetterStore(path);
    await store.append([letter(1), letter(2)]);
    await new FileDeadLetterStore(path).append([letter(3)]);
    const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const read = await store.read();
    expect(read.map((l) => l.key)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
    expect(read[0]).toMatchObject({ ...letter(1), failedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
  });

  it('serializes concurrent appends so lines never interleave', async () => {
    const store = new FileDeadLetterStore(path);
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.append([letter(i), letter(i + 100)])));
    expect((await store.read()).length).toBe(40);
  });

  it('skips a line torn by a crash and starts the next append on a new line', async () => {
    const store = new FileDeadLetterStore(path);
    await store.append([letter(1)]);
    await appendFile(path, '{"stream":"s","table":"public.it');
    await store.append([letter(2)]);
    expect((await store.read()).map((l) => l.position)).toEqual(['1', '2']);
  });

  it('reads nothing when the file does not exist and writes nothing for an empty append', async () => {
    const store = new FileDeadLetterStore(path);
    await store.append([]);
    expect(await store.read()).toEqual([]);
  });
});
