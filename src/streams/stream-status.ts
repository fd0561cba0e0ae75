import type { Source } from '../cdc/source.js';
import type { StreamHealth } from './stream-health.js';
import type { StreamParts } from './stream-parts.js';

export type StreamState = 'starting' | 'running' | 'retrying' | 'stalled' | 'failed' | 'stopped';

export interface StreamStatus {
  name: string;
  direction: string;
  source: string;
  sink: string;
  state: StreamState;
  connected: boolean;
  position: string | null;
  applied: number;
  failed: number;
  lastError: string | null;
  problems: string[];
  lastAppliedAt: string | null;
  /** Tables whose copy of existing rows is not done at the last checkpoint (the first one being copied now). */
  copying: string[];
}

/** What a stream's status shows of what it did: the changes applied and failed, the last error, the open problems. */
export class StatusCounters {
  applied = 0;
  failed = 0;
  lastError: string | null = null;
  /** Conditions the operator must resolve (a table stopped by a CDC cleanup gap); cleared on reopen. */
  problems: string[] = [];
  lastAppliedAt: Date | null = null;
}

/** What `status()` shows: the stream's state and position, its parts' health, what it counted. */
export function streamStatus(parts: StreamParts, health: StreamHealth, state: StreamState, position: string | null, counters: StatusCounters): StreamStatus {
  const { config, source } = parts;
  return {
    name: config.name,
    direction: config.direction,
    source: config.source.type,
    sink: config.sink.type,
    state: health.shownState(state),
    connected: health.connected,
    position,
    applied: counters.applied,
    failed: counters.failed,
    lastError: counters.lastError,
    problems: [...counters.problems],
    lastAppliedAt: counters.lastAppliedAt?.toISOString() ?? null,
    copying: copyingTables(source, position),
  };
}

/** The tables `source` still copies at `position` (status `copying`). */
function copyingTables(source: Source, position: string | null): string[] {
  if (position === null || !source.copying) return [];
  try {
    return source.copying(position);
  } catch {
    return []; // a position of another source type: the stream's own start says so
  }
}
