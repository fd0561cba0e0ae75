import type { Source } from '../cdc/source.js';
import { checkWhere } from '../cdc/copy-filter.js';
import type { StreamConfig } from '../config/schema.js';
import { ConfigError, TransientError } from '../core/errors.js';

/** A copy asked for while the stream runs (`cdc-sync snapshot`, the control API). */
export interface CopyRequest {
  tables: string[];
  where: string | undefined;
}

/** Throws when the stream cannot make the copy of `tables` (all when empty) asked for at `position`. */
export function checkCopyRequest(config: StreamConfig, source: Source, position: string | null, tables: string[], where?: string): void {
  if (!source.requestSnapshot) throw new ConfigError(`stream ${config.name}: a ${config.source.type} source cannot copy its tables again`);
  const unknown = tables.filter((t) => !config.tables.some((c) => c.source === t));
  if (unknown.length > 0) throw new ConfigError(`--table: not a table of stream ${config.name}: ${unknown.join(', ')} (have: ${config.tables.map((t) => t.source).join(', ')})`);
  checkWhere(tables, where);
  // Refused now, not when the request is stored: a wrong condition must fail the command that gave it.
  source.requestSnapshot(position, tables, where);
}

/** Ends the running pipeline so that the requested copies are stored as the checkpoint (see Stream.requestSnapshot). */
export class CopyRequested extends Error {
  override name = 'CopyRequested';
}

/**
 * Copies asked for while the stream runs, waiting to be stored as the
 * checkpoint between two pipelines: each asker learns when its request is
 * stored (or why not).
 */
export class CopyRequests {
  private waiting: (CopyRequest & { done: (error?: unknown) => void })[] = [];

  /** Queues a request; resolves once it is stored. */
  add(request: CopyRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ ...request, done: (error) => (error ? reject(error) : resolve()) });
    });
  }

  /** Stores what waits with `store` (all at once) and tells each asker. */
  async storeAll(store: (requests: CopyRequest[]) => Promise<void>): Promise<void> {
    const requests = this.waiting.splice(0);
    try {
      await store(requests);
      for (const r of requests) r.done();
    } catch (error) {
      for (const r of requests) r.done(error);
      throw error;
    }
  }

  /** The stream stopped: no waiting request will be stored. */
  dropAll(stream: string): void {
    for (const r of this.waiting.splice(0)) r.done(new TransientError(`stream ${stream} stopped before the copy was asked for`));
  }
}
