import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { CheckpointStore } from './checkpoint-store.js';

interface FileContent {
  version: 1;
  streams: Record<string, { position: string; updatedAt: string }>;
}

/**
 * Checkpoints in one JSON file, for sinks without transactions. Each save
 * writes a temporary file, fsyncs it, renames it over the old one and fsyncs
 * the folder: after a crash the file holds either the old or the new
 * positions, never a torn mix. Saves are serialized, so streams of one
 * process can share the file.
 */
export class FileCheckpointStore implements CheckpointStore {
  private queue: Promise<unknown> = Promise.resolve();
  private cache: FileContent | undefined;

  constructor(private readonly path: string) {}

  async load(stream: string): Promise<string | null> {
    const content = await this.read();
    return content.streams[stream]?.position ?? null;
  }

  save(stream: string, position: string): Promise<void> {
    const next = this.queue.then(async () => {
      const content = await this.read();
      content.streams[stream] = { position, updatedAt: new Date().toISOString() };
      await this.write(content);
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Forgets a stream's position (`cdc-sync reset`): its next run starts from the beginning. */
  remove(stream: string): Promise<boolean> {
    const next = this.queue.then(async () => {
      const content = await this.read();
      if (!(stream in content.streams)) return false;
      delete content.streams[stream];
      await this.write(content);
      return true;
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async read(): Promise<FileContent> {
    if (this.cache) return this.cache;
    await this.removeStaleTemporaries();
    try {
      const parsed = JSON.parse(await readFile(this.path, 'utf8')) as FileContent;
      this.cache = { version: 1, streams: parsed.streams ?? {} };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.cache = { version: 1, streams: {} };
    }
    return this.cache;
  }

  /**
   * A process killed between writing its temporary file and renaming it left
   * `<file>.<pid>.tmp` behind; outside a container the next one has another
   * pid, so each crash would leave one more. Those of processes that are gone
   * are removed at the first read (a live one's may be mid-save).
   */
  private async removeStaleTemporaries(): Promise<void> {
    const folder = dirname(this.path);
    const prefix = `${basename(this.path)}.`;
    let names: string[];
    try {
      names = await readdir(folder);
    } catch {
      return;
    }
    for (const name of names) {
      const middle = name.startsWith(prefix) && name.endsWith('.tmp') ? name.slice(prefix.length, -'.tmp'.length) : '';
      const pid = /^\d+$/.test(middle) ? Number(middle) : 0;
      if (pid > 0 && pid !== process.pid && !alive(pid)) await rm(join(folder, name), { force: true });
    }
  }

  private async write(content: FileContent): Promise<void> {
    const folder = dirname(this.path);
    await mkdir(folder, { recursive: true });
    const temporary = `${this.path}.${process.pid}.tmp`;
    const file = await open(temporary, 'w');
    try {
      await file.writeFile(`${JSON.stringify(content, null, 2)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, this.path);
    const dir = await open(folder, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
