import type { Config } from '../config/schema.js';
import { NotFoundError } from '../server/control.js';
import type { Stream } from '../streams/stream.js';
import { deadLetterStoreFor, retryFailed, type RetryResult } from './retry-failed.js';

/** The streams a request names (all when unnamed); NotFoundError for a name no stream has. */
export function selectStreams(streams: Stream[], filter: { stream?: string | undefined; direction?: string | undefined }): Stream[] {
  if (filter.stream && !streams.some((s) => s.name === filter.stream)) {
    throw new NotFoundError(`no stream named "${filter.stream}" (have: ${streams.map((s) => s.name).join(', ')})`);
  }
  return streams.filter((s) => (!filter.stream || s.name === filter.stream) && (!filter.direction || s.status().direction === filter.direction));
}

/** What the control endpoints and the command line do, on a set of streams (running or not). */
export function controller(config: Config, streams: Stream[]) {
  return {
    trigger(filter: { stream?: string | undefined; direction?: string | undefined }): string[] {
      const chosen = selectStreams(streams, filter);
      for (const s of chosen) s.wake();
      return chosen.map((s) => s.name);
    },
    /** Copies the tables of one running stream again (all when `tables` is empty); resolves once the request is stored. */
    async snapshot(request: { stream: string; tables?: string[] | undefined; where?: string | undefined }): Promise<{ stream: string; tables: string[] }> {
      const [stream] = selectStreams(streams, { stream: request.stream });
      await stream!.requestSnapshot(request.tables ?? [], request.where);
      return { stream: stream!.name, tables: request.tables ?? [] };
    },
    async retryFailed(filter: { stream?: string | undefined; table?: string | undefined }): Promise<Record<string, RetryResult>> {
      const results: Record<string, RetryResult> = {};
      for (const stream of selectStreams(streams, filter)) {
        const store = deadLetterStoreFor(config, stream.name);
        try {
          results[stream.name] = await retryFailed(stream, store, filter.table);
        } finally {
          await store.close();
        }
      }
      return results;
    },
  };
}
