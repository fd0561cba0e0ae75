import type { RealtimeChannel, SupabaseClient } from '@supabase/supabase-js';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import type { StreamContext } from '../../streams/context.js';
import { subscribeFeed, type FeedTable } from './realtime-feed.js';

export interface LiveHandlers {
  change(event: ChangeEvent): void;
  cutDown(table: FeedTable, key: Row | null, errors: string[]): void;
  /** The channel listens (a first subscription, or again after a break). */
  listening(): void;
  /** The channel is down or broken: a catch-up read is due. */
  lost(reason: string): void;
}

/**
 * The source's Realtime channel, made again after one broke. Its callbacks
 * act only while it is the current one: a channel given up (broken, or
 * removed at close) stays silent.
 */
export class LiveChannel {
  private channel: RealtimeChannel | undefined;
  /** Wait before making a new channel after one broke; doubles while they keep breaking. */
  private resubscribeDelayMs = 0;
  private readonly followUps = new Set<NodeJS.Timeout>();

  constructor(
    private readonly context: () => StreamContext,
    private readonly client: () => SupabaseClient | undefined,
    private readonly tables: FeedTable[],
    private readonly options: { private: boolean },
    private readonly handlers: LiveHandlers,
  ) {}

  get subscribed(): boolean {
    return this.channel !== undefined;
  }

  subscribe(): void {
    const context = this.context();
    const channel: RealtimeChannel = subscribeFeed(
      this.client()!,
      `cdc-sync:${context.stream}`,
      this.tables,
      {
        change: (event) => this.channel === channel && this.handlers.change(event),
        cutDown: (table, key, errors) => this.channel === channel && this.handlers.cutDown(table, key, errors),
        listening: () => {
          if (this.channel !== channel) return;
          this.resubscribeDelayMs = 0;
          this.handlers.listening();
        },
        state: (connected, detail) => {
          if (this.channel !== channel) return;
          context.setConnected('source', connected);
          if (!connected) {
            const hint = /private channels/.test(detail ?? '') ? ' (set source.private: true)' : '';
            context.log.warn({ detail }, `Realtime channel down${hint}; a catch-up read follows the next subscription`);
            this.handlers.lost('channel down');
          }
        },
        broken: (cause) => {
          if (this.channel !== channel) return;
          this.channel = undefined;
          context.setConnected('source', false);
          this.resubscribeDelayMs = Math.min(60_000, Math.max(1000, this.resubscribeDelayMs * 2));
          context.log.warn({ cause, retryInMs: this.resubscribeDelayMs }, 'Realtime sends nothing more on this channel; catching up and subscribing again');
          this.handlers.lost('channel broken');
          void this.client()?.removeChannel(channel);
          const timer = setTimeout(() => {
            this.followUps.delete(timer);
            if (this.client() && !this.channel && !context.stopping.aborted) this.subscribe();
          }, this.resubscribeDelayMs);
          timer.unref();
          this.followUps.add(timer);
        },
      },
      { private: this.options.private },
    );
    this.channel = channel;
  }

  async close(): Promise<void> {
    for (const t of this.followUps) clearTimeout(t);
    this.followUps.clear();
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await this.client()?.removeChannel(channel);
  }
}
