import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DeadLetter } from '../sinks/sink.js';
import type { DeadLetterStore } from './dead-letter-store.js';

/** One line of the file: the dead letter and when it failed. */
export interface DeadLetterLine extends DeadLetter {
  failedAt: string;
}

/**
 * Dead letters as JSON lines, appended and fsynced before the stream moves
 * its checkpoint past them. Appends are serialized, so streams of one
 * process can share the file. A crash during an append leaves at most a torn
 * last line: readers skip it and the next append starts on a new line.
 */
export class FileDeadLetterStore implements DeadLetterStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  append(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return Promise.resolve();
    const failedAt = new Date().toISOString();
    const text = letters.map((letter) => `${JSON.stringify({ ...letter, failedAt } satisfies DeadLetterLine)}\n`).join('');
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
  async read(): Promise<DeadLetterLine[]> {
    await this.queue;
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const lines: DeadLetterLine[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        lines.push(JSON.parse(line) as DeadLetterLine);
      } catch {
        // a line torn by a crash during append
      }
    }
    return lines;
  }
}
