/**
 * Where a stream's position lives between runs. A position is saved only
 * after the sink committed every change up to it; saving it earlier could
 * lose changes, saving it later only replays some (harmless: sinks are
 * idempotent).
 */
export interface CheckpointStore {
  load(stream: string): Promise<string | null>;
  save(stream: string, position: string): Promise<void>;
}
