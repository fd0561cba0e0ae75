import type { DeadLetter } from '../sinks/sink.js';
import type { DeadLetterStore } from './dead-letter-store.js';
import { JsonLinesFile } from './json-lines-file.js';

/** One line of the file: the dead letter and when it failed. */
export interface DeadLetterLine extends DeadLetter {
  failedAt: string;
}

/** Dead letters as JSON lines, appended and fsynced before the stream moves its checkpoint past them. */
export class FileDeadLetterStore implements DeadLetterStore {
  private readonly file: JsonLinesFile<DeadLetterLine>;

  constructor(readonly path: string) {
    this.file = new JsonLinesFile(path);
  }

  append(letters: DeadLetter[]): Promise<void> {
    const failedAt = new Date().toISOString();
    return this.file.append(letters.map((letter) => ({ ...letter, failedAt })));
  }

  /** Every complete line of the file, oldest first; a torn last line is skipped. */
  read(): Promise<DeadLetterLine[]> {
    return this.file.read();
  }
}
