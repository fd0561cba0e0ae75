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

/** How long a chunk that is not full waits for more after the last XLogData while the server sends no keepalive (holdChunk). */
const HOLD_MS = 100;

/** A chunk that is not full, held back (holdChunk), and what the server sent last, which decides for how long. */
export class ChunkHold {
  /** A keepalive came after the last XLogData: the server has sent all the WAL it has for now. */
  private idle = false;
  private lastXLogAt = 0;
  /** When the chunk now held back was first held. */
  private holdingSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly holdMs: number;

  constructor(holdMs: number | undefined) {
    this.holdMs = holdMs ?? HOLD_MS;
  }

  get serverIdle(): boolean {
    return this.idle;
  }

  xlogData(): void {
    this.idle = false;
    this.lastXLogAt = performance.now();
  }

  keepalive(): void {
    this.idle = true;
  }

  /** A new connection: nothing received on it yet, nothing held. */
  reset(): void {
    this.idle = false;
    this.holdingSince = undefined;
  }

  released(): void {
    this.holdingSince = undefined;
  }

  /** Whether to hold a chunk that is not full back (holdChunk); if so, `retry` looks again after `holdMs`. */
  hold(full: boolean, undecoded: boolean, retry: () => void): boolean {
    const holdMs = this.holdMs;
    const now = performance.now();
    this.holdingSince ??= now;
    const hold = holdChunk({
      full,
      serverIdle: this.idle,
      undecoded,
      sinceLastXLogData: now - this.lastXLogAt,
      sinceHeld: now - this.holdingSince,
      holdMs,
    });
    if (hold && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        retry();
      }, holdMs);
    }
    return hold;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
