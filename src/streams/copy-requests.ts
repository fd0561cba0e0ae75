import { TransientError } from '../core/errors.js';

/** A copy asked for while the stream runs (`cdc-sync snapshot`, the control API). */
export interface CopyRequest {
  tables: string[];
  where: string | undefined;
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
