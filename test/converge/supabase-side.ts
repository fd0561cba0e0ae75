import { startPostgrest, type PostgrestStandIn } from '../support/postgrest/server.js';
import { startRealtimeServer, type RealtimeServer } from '../support/realtime/index.js';
import type { PgServer } from '../support/test-database.js';
import type { Edit } from './history.js';
import { PostgresSide } from './postgres-side.js';
import type { Side, Snapshot, UserChange, Write } from './sides.js';

/**
 * A Supabase project through its stand-ins: the portal's PostgreSQL, the
 * PostgREST stand-in for the catch-up reads and the Realtime stand-in for
 * the live feed (test/support/postgrest, test/support/realtime), read by a
 * supabase-realtime source, and written by a supabase sink through the
 * same stand-ins.
 */
export class SupabaseSide implements Side {
  private constructor(
    private readonly portal: PostgresSide,
    private readonly rest: PostgrestStandIn,
    private readonly realtime: RealtimeServer,
  ) {}

  static async create(label: string, server: PgServer): Promise<SupabaseSide> {
    const portal = await PostgresSide.create(label, { portal: true, server });
    const rest = await startPostgrest({ databaseUrl: portal.url });
    const realtime = await startRealtimeServer({ databaseUrl: portal.url, forwardHttpTo: rest.url });
    return new SupabaseSide(portal, rest, realtime);
  }

  get label(): string {
    return this.portal.label;
  }

  /**
   * The README's settings but a short margin and interval: a history must
   * settle within the checker's 20 s, and a change Realtime lost is found by
   * the catch-up after the margin.
   */
  source(): string {
    return `{ type: supabase-realtime, url: ${this.realtime.url}, key: ${this.rest.key}, tombstones: true, catchUp: { intervalMinutes: 0.1, marginSeconds: 1 } }`;
  }

  /** The same project URL as the source's: the sink then knows which tables a stream reads back (two-way). */
  sink(): string {
    return `{ type: supabase, url: ${this.realtime.url}, key: ${this.rest.key} }`;
  }

  /** `init-sql`'s Supabase part: publication, old images, the updated-at trigger, tombstones, grants. */
  async setUp(script: string): Promise<void> {
    await this.portal.setUp(script);
    await this.rest.reloadSchema();
  }

  /** Realtime loses its connections and every change for a moment; the clients reconnect by themselves. */
  async outage(): Promise<void> {
    this.realtime.pause();
    this.realtime.dropConnections();
    await new Promise((r) => setTimeout(r, 300));
    this.realtime.resume();
  }

  apply(edits: Edit[], base: number): Promise<number> {
    return this.portal.apply(edits, base);
  }

  snapshot(base: number): Promise<Snapshot> {
    return this.portal.snapshot(base);
  }

  userChanges(base: number): Promise<UserChange[]> {
    return this.portal.userChanges(base);
  }

  writes(base: number): Promise<Write[]> {
    return this.portal.writes(base);
  }

  /** Its stream reads through PostgREST: filters, not SQL. */
  idsBetween(lo: number, hi: number): string {
    return `id.gte.${lo},id.lt.${hi}`;
  }

  deadLetters(): Promise<number> {
    return this.portal.deadLetters();
  }

  conflicts(): Promise<number> {
    return this.portal.conflicts();
  }

  async close(): Promise<void> {
    await this.realtime.close();
    await this.rest.close();
    await this.portal.close();
  }
}
