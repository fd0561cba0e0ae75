import { ConfigError } from '../core/errors.js';
import type { StreamContext } from './context.js';
import { mapTables } from './map-tables.js';
import type { StreamParts } from './stream-parts.js';
import { parentsFirst } from './table-order.js';

/**
 * `cdc-sync validate`: the checks a start makes (the tables and columns of
 * both databases, the mapping between them, the source's set-up), without
 * running the stream: nothing is created, written or subscribed to.
 * `context`: the stream's, with `checkOnly`; `configError` makes the error thrown for a configuration error.
 */
export async function checkStream(parts: StreamParts, context: StreamContext, configError: (error: ConfigError) => ConfigError): Promise<void> {
  const { config, sink, source } = parts;
  try {
    // Not inside `source.order?.(…)`: for a source without `order` the optional call would skip the sink's checks.
    const order = parentsFirst(mapTables(config.tables, await sink.open(context, config.tables), context.log));
    source.order?.(order);
    await source.open(context);
  } catch (error) {
    throw error instanceof ConfigError ? configError(error) : error;
  } finally {
    await Promise.allSettled([source.close(), sink.close()]);
  }
}
