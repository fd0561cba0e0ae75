import type { Source } from '../cdc/source.js';
import type { ChangeEvent } from '../core/change-event.js';
import type { StreamContext } from './context.js';
import { checkpointText, readCheckpointText } from './parked-changes.js';
import { retryTransient, type RetryHooks } from './retry.js';
import type { StreamParts } from './stream-parts.js';

/** The stored checkpoint, from the separate store or else the sink. */
export async function loadCheckpoint(parts: StreamParts, hooks: RetryHooks): Promise<{ position: string | null; held: ChangeEvent[] }> {
  const { config, sink } = parts;
  return readCheckpointText(
    await retryTransient(
      () => (parts.checkpoints ? parts.checkpoints.load(config.name) : sink.readCheckpoint(config.name)),
      config.retry,
      hooks,
    ),
  );
}

/** Stores `text` as the checkpoint, in the separate store or else in the sink (a batch of nothing but it). */
export async function saveCheckpoint(parts: StreamParts, text: string, hooks: RetryHooks): Promise<void> {
  const { config, sink } = parts;
  const store = parts.checkpoints;
  if (store) await retryTransient(() => store.save(config.name, text), config.retry, hooks);
  else await retryTransient(() => sink.apply({ changes: [], deadLetters: [], checkpoint: { stream: config.name, position: text } }), config.retry, hooks);
}

/**
 * Replaces the stored checkpoint with `change(current)` (for `cdc-sync
 * snapshot`), once, without running the stream. Returns false when there
 * was nothing to change.
 */
export async function rewriteCheckpoint(
  parts: StreamParts,
  context: StreamContext,
  change: (position: string | null, source: Source) => string | null,
): Promise<boolean> {
  const { config, sink, source, checkpoints } = parts;
  const name = config.name;
  // A checkpoint kept apart from the sink is rewritten without it: the target need not be reachable.
  const opened = checkpoints ? null : sink.open(context, config.tables);
  try {
    await opened;
    const current = readCheckpointText(checkpoints ? await checkpoints.load(name) : await sink.readCheckpoint(name));
    const position = change(current.position, source);
    if (position === null || position === current.position) return false;
    // Changes held for their parents stay held.
    const next = checkpointText(position, current.held);
    if (checkpoints) await checkpoints.save(name, next);
    else await sink.apply({ changes: [], deadLetters: [], checkpoint: { stream: name, position: next } });
    return true;
  } finally {
    if (opened) await sink.close();
  }
}
