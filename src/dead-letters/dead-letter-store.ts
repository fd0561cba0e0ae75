import type { DeadLetter } from '../sinks/sink.js';

/**
 * Where dead letters go when the sink cannot keep them in its own
 * transaction (`Sink.storesDeadLetters` false). The stream appends a batch's
 * dead letters before it saves the batch's checkpoint: a crash in between
 * replays the batch and may append its dead letters twice, never lose them.
 */
export interface DeadLetterStore {
  append(letters: DeadLetter[]): Promise<void>;
}
