import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * A JSON-lines file that objects are appended to and fsynced. Appends are
 * serialized, so streams of one process can share the file. A crash during
 * an append leaves at most a torn last line: readers skip it and the next
 * append starts on a new line.
 */
export class JsonLinesFile<T> {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly stringify: (value: T) => string = JSON.stringify,
  ) {}

  append(objects: T[]): Promise<void> {
    if (objects.length === 0) return Promise.resolve();
    const text = objects.map((o) => `${this.stringify(o)}\n`).join('');
    const next = this.queue.then(async () => {
      await mkdir(dirname(this.path), { recursive: true });
      const file = await open(this.path, 'a+');
      try {
        // After a torn last line, start on a new line so this append stays readable.
        const { size } = await file.stat();
        const last = Buffer.alloc(1);
        if (size > 0) await file.read(last, 0, 1, size - 1);
        await file.write(size > 0 && last[0] !== 0x0a ? `\n${text}` : text);
        await file.sync();
      } finally {
        await file.close();
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Every complete line of the file, oldest first; a torn last line is skipped. */
  async read(): Promise<T[]> {
    await this.queue;
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const lines: T[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        lines.push(JSON.parse(line) as T);
      } catch {
        // a line torn by a crash during append
      }
    }
    return lines;
  }
}
