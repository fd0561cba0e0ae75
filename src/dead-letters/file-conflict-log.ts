import { toJsonText } from '../core/json.js';
import type { ConflictEntry } from '../sinks/conflicts.js';
import { JsonLinesFile } from './json-lines-file.js';

/**
 * The conflict log of a sink that cannot keep one in its target (the
 * `supabase` sink: PostgREST serves only the exposed schemas): JSON lines
 * beside the dead letters (`conflicts.path`), one per conflict, with the
 * incoming, the stored and the winning row, appended before the stream
 * moves its checkpoint past the batch.
 */
export class FileConflictLog {
  private readonly file: JsonLinesFile<ConflictEntry & { loggedAt: string }>;

  constructor(readonly path: string) {
    // Binary values as \x-hex, bigints as text (toJsonText), as the database conflict logs show them.
    this.file = new JsonLinesFile<ConflictEntry & { loggedAt: string }>(path, toJsonText);
  }

  append(entries: ConflictEntry[]): Promise<void> {
    const loggedAt = new Date().toISOString();
    return this.file.append(entries.map((e) => ({ ...e, loggedAt })));
  }

  read(): Promise<(ConflictEntry & { loggedAt: string })[]> {
    return this.file.read();
  }
}
