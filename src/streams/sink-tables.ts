import type { TableMapping } from '../core/mapping.js';
import type { Sink } from '../sinks/sink.js';
import type { StreamContext } from './context.js';
import { mapTables } from './map-tables.js';
import { retryTransient, type RetryHooks } from './retry.js';
import type { StreamHealth } from './stream-health.js';
import type { StreamParts } from './stream-parts.js';
import { parentsFirst } from './table-order.js';

/** The stream's sink opened for its tables: how each maps onto its target, and the order they are applied in. */
export class SinkTables {
  mappings = new Map<string, TableMapping>();
  order: string[] = [];

  constructor(
    private readonly parts: StreamParts,
    private readonly context: StreamContext,
    private readonly health: StreamHealth,
  ) {}

  /** `hooks`: the retries' (the stream's by default). */
  async open(hooks: RetryHooks = this.health.retryHooks('sink')): Promise<void> {
    const { config, sink } = this.parts;
    const targets = await retryTransient(() => sink.open(this.context, config.tables), config.retry, hooks);
    const mappings = mapTables(config.tables, targets, this.context.log);
    this.mappings = new Map(mappings.map((m) => [m.source, m]));
    this.order = parentsFirst(mappings);
    sink.bind(mappings);
  }

  /**
   * Runs `work` with this stream's sink open and bound to its tables: the
   * running sink when the stream is connected, else opened just for `work`
   * (retry-failed without a running stream).
   */
  async withSink<T>(work: (sink: Sink) => Promise<T>): Promise<T> {
    if (this.health.sinkConnected) return work(this.parts.sink);
    try {
      await this.open();
      return await work(this.parts.sink);
    } finally {
      await this.parts.sink.close();
      this.context.setConnected('sink', false);
    }
  }
}
