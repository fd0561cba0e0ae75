/** What the WAL source knows when a chunk could go out (times in ms). */
export interface HoldState {
  /** At least a chunk's worth (readLimit) of changes is decoded. */
  full: boolean;
  /** A keepalive came after the last XLogData: the server has sent all the WAL it has for now. */
  serverIdle: boolean;
  /** XLogData received and not decoded yet. */
  undecoded: boolean;
  sinceLastXLogData: number;
  /** Since the chunk was first held back. */
  sinceHeld: number;
  holdMs: number;
}

/**
 * Whether to wait with a chunk that is not full: while the server is still
 * sending, more transactions follow at once. Full chunks make full batches,
 * and in a backlog they keep to the transactions' own boundaries, so a row's
 * insert and the updates that follow it meet in one batch (and go as one new
 * row). The walsender sends a keepalive whenever it runs out of WAL to send
 * (WalSndWaitForWal, "before sleeping, we send a ping"), so a lone
 * transaction waits only for that. A walsender busy with other WAL sends
 * none: then a chunk waits `holdMs` after the last XLogData, and never more
 * than ten times that in all (a steady trickle of changes).
 */
export function holdChunk(state: HoldState): boolean {
  if (state.full || (state.serverIdle && !state.undecoded)) return false;
  if (!state.undecoded && state.sinceLastXLogData >= state.holdMs) return false;
  return state.sinceHeld < 10 * state.holdMs;
}
