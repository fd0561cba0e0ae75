import * as z from 'zod';
import { isCronExpression } from '../core/cron.js';
import { conflictRule } from '../core/mapping.js';

// zod compiles a parser for each object schema (new Function) on its first parse: work that pays off over many
// parses, while the configuration is parsed once per start (12 ms of it). Interpreted, that first parse is faster.
z.config({ jitless: true });

/**
 * The configuration contract of DESIGN.md. Keys may be added; none renamed
 * without a migration note. Objects are strict so a typo is an error that
 * names its key path instead of a setting silently ignored.
 */
export const SOURCE_TYPES = [
  'mssql-cdc',
  'mssql-queue',
  'supabase-realtime',
  'postgres-wal',
  'postgres-changelog',
  'sqlite-changelog',
  'nats',
] as const;
export const SINK_TYPES = ['supabase', 'postgres', 'mssql', 'sqlite', 'nats'] as const;

/**
 * A whole number, also when it came from \${VAR} substitution as text
 * (`port: \${PORT}`). Only number settings convert: a token or stream name of
 * digits stays text.
 */
function integer(limits: (n: z.ZodNumber) => z.ZodNumber = (n) => n) {
  return z.preprocess((v) => (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v), limits(z.number().int()));
}

const identifierList = z.array(z.string().min(1)).min(1);

export const tableSchema = z.strictObject({
  source: z.string().min(1),
  /** Left out: the sink's table named like the source's, ignoring case and underscores (found at start, logged). */
  target: z.string().min(1).optional().transform((t) => t ?? ''),
  key: identifierList.optional(),
  columns: z.record(z.string().min(1), z.string().min(1)).optional(),
  exclude: z.array(z.string().min(1)).optional(),
  /**
   * Unset: the newer change wins by each change's own commit/capture time,
   * against the target's own newest change of that key (two-way set-ups; ties
   * go to the stream's \`prefer\` side; one-way, every change is applied).
   * newer-wins: by the \`updatedAt\` column when set, else as unset.
   * source-wins: every incoming change is applied.
   */
  conflict: z.enum(['source-wins', 'newer-wins']).optional(),
  updatedAt: z.string().min(1).optional(),
  /**
   * mssql sink, target key an IDENTITY column: write the source's key values
   * into it (SET IDENTITY_INSERT). Without it, map the source key to an
   * alternate unique column and let SQL Server assign the identity.
   */
  identityInsert: z.boolean().default(false),
  /** Column ownership: the only columns this stream may change on existing rows (e.g. the portal's note text). */
  owns: z.array(z.string().min(1)).optional(),
  /** supabase-realtime: a column whose non-null value means deleted (catch-up reads cannot see hard deletes). */
  softDelete: z.string().min(1).optional(),
});

/** NATS JetStream (`type: nats` sources and sinks): where the changes are stored and under which subjects. */
export const natsSchema = z.strictObject({
  /** The JetStream stream; the sink creates it when missing. */
  stream: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-" (a JetStream stream name)').default('CDC_SYNC'),
  /** First token of every subject: `<subjectPrefix>.<stream>.<schema>.<table>`. */
  subjectPrefix: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'subject tokens of letters, digits, "_" and "-", separated by "."').default('cdc'),
  /** sink: replicas of the stream it creates (3 in a three-node cluster). */
  replicas: integer((n) => n.min(1).max(5)).default(1),
  /** sink: JetStream drops a message id it stored within this window (a batch re-sent after a crash). */
  duplicateWindowSeconds: integer((n) => n.positive()).default(120),
  /**
   * sink: publish each change to one of this many partitions by its key (a
   * last subject token), for as many applying streams; source: how many the
   * publishing stream makes.
   */
  partitions: integer((n) => n.min(1).max(1024)).default(1),
  /**
   * sink: also publish Debezium's transaction events, BEGIN before and END
   * after each published batch (END with its event counts), to
   * `<subjectPrefix>.<stream>`.
   */
  transactions: z.boolean().default(false),
  /** source: the partition it applies (0 … partitions-1); unset: all changes. */
  partition: integer((n) => n.nonnegative()).optional(),
  /** source: the publishing cdc-sync stream whose subjects it reads (default: this stream's name). */
  from: z.string().min(1).optional(),
  /** source: the durable consumer's name (default cdc-sync_<stream>). */
  consumer: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-"').optional(),
});

export const sourceSchema = z.strictObject({
  type: z.enum(SOURCE_TYPES),
  url: z.string().min(1),
  /** Rows per read; defaults to the stream's batch.maxSize. */
  readLimit: integer((n) => n.positive()).optional(),
  /** Poll delay right after a read that found work / when idle (adaptive in between). */
  pollIntervalMs: integer((n) => n.nonnegative()).default(0),
  idleIntervalMs: integer((n) => n.positive()).default(1000),
  /** A stream without checkpoint first copies the rows its tables hold (every source type; supabase-realtime: a catch-up read from the start). */
  snapshot: z.enum(['initial', 'never']).default('initial'),
  /** sqlite-changelog, postgres-changelog, postgres-wal: rows per chunk of that copy (each chunk is one read and at least one batch). */
  snapshotChunkSize: integer((n) => n.positive().max(1_000_000)).default(10_000),
  /** supabase-realtime: the service-role key (SUPABASE_SERVICE_ROLE_KEY). */
  key: z.string().min(1).optional(),
  /** supabase-realtime: read deletes from the tombstone table `init-sql` sets up (else only live or soft deletes). */
  tombstones: z.boolean().default(false),
  /** supabase-realtime: join a private channel (projects with Realtime's "Allow public access" off). */
  private: z.boolean().default(false),
  /**
   * Changes held in memory ahead of the sink. supabase-realtime: live
   * changes (10,000 by default); on overflow they are dropped and caught up.
   * postgres-wal: decoded changes before the replication socket is paused
   * (by default four batches, at least 10,000, so the server keeps sending
   * while a batch is prepared and another written).
   */
  bufferSize: integer((n) => n.positive()).optional(),
  /** supabase-realtime catch-up reads (REVERSE_SYNC_* of the older poller). */
  catchUp: z
    .strictObject({
      // A number: fractions allowed (tests, or catch-up every 30 s: 0.5).
      intervalMinutes: z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), z.number().positive()).default(60),
      lookbackHours: integer((n) => n.positive()).default(24),
      maxRecords: integer((n) => n.positive()).default(500),
      marginSeconds: integer((n) => n.nonnegative()).default(30),
    })
    .prefault({}),
  /** Save the position at least this often on an idle source (mssql-cdc: ahead of the cleanup job). */
  heartbeatMs: integer((n) => n.positive()).default(60_000),
  /** postgres-wal: replication slot and publication (default cdc_sync_<stream>); created when missing. */
  slot: z.string().regex(/^[a-z0-9_]{1,63}$/, 'lower-case letters, digits and "_" (a replication slot name)').optional(),
  publication: z.string().regex(/^[A-Za-z0-9_]{1,63}$/, 'letters, digits and "_"').optional(),
  /** postgres-wal: a TRUNCATE of a captured table empties the target table (`apply`, postgres and sqlite sinks), goes to the dead letter (default) or is ignored. */
  truncate: z.enum(['apply', 'dead-letter', 'ignore']).default('dead-letter'),
  /** postgres-wal: acknowledge (standby status) at least this often. */
  statusIntervalMs: integer((n) => n.positive()).default(10_000),
  /** mssql-queue: the trigger-fed queue table (the older scripts' SyncQueue). */
  queueTable: z.string().min(1).default('dbo.SyncQueue'),
  /** mssql-queue: a row claimed this many times without success is marked Failed (the older scripts: 10). */
  maxAttempts: integer((n) => n.positive()).default(10),
  /** mssql-queue: how long claimed rows stay reserved for a reader that may have died. */
  leaseSeconds: integer((n) => n.min(5)).default(60),
  /**
   * mssql-queue: Synced rows are deleted after this many hours (whole hours).
   * postgres-changelog, sqlite-changelog: changes every reader of the log
   * has checkpointed are deleted once this old (the newer-wins rule of a
   * two-way pair compares with the target's changes of this window).
   */
  retentionHours: z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), z.number().positive()).default(72),
  /** type nats only. */
  nats: natsSchema.optional(),
});

export const sinkSchema = z.strictObject({
  type: z.enum(SINK_TYPES),
  url: z.string().min(1),
  key: z.string().min(1).optional(),
  /** type nats only. */
  nats: natsSchema.optional(),
});

export const streamSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'letters, digits, "_", "." and "-", at most 63 characters'),
  direction: z.enum(['forward', 'reverse']).default('forward'),
  /**
   * Which side wins two changes of one row made at the same instant on both
   * sides (newer-wins by change time). Unset: the forward stream's source,
   * i.e. \`source\` on a forward stream and \`sink\` on a reverse one, so the two
   * streams of a pair agree.
   */
  prefer: z.enum(['source', 'sink']).optional(),
  /** A disabled stream is validated but not run (REVERSE_SYNC_ENABLED=false for supabase-realtime). */
  enabled: z.boolean().default(true),
  source: sourceSchema,
  sink: sinkSchema,
  tables: z.array(tableSchema).min(1),
  batch: z
    .strictObject({
      /** Unset: defaultBatchSize of the stream's source type. */
      maxSize: integer((n) => n.positive().max(100_000)).optional(),
      maxWaitMs: integer((n) => n.nonnegative()).default(100),
    })
    .prefault({}),
  retry: z
    .strictObject({
      attempts: integer((n) => n.positive()).default(10),
      minDelayMs: integer((n) => n.positive()).default(200),
      maxDelayMs: integer((n) => n.positive()).default(30_000),
    })
    .prefault({}),
  /**
   * A database that answers nothing for `timeoutMs` (a statement, a connection
   * attempt, the replication protocol's reply, an idle probe) is taken as lost:
   * the stream shows it (cdc_sync_connected 0, /readyz 503, a log line) and
   * reconnects. Packets dropped by a firewall or a paused VM give no other sign.
   */
  liveness: z.strictObject({ timeoutMs: integer((n) => n.min(100)).default(30_000) }).prefault({}),
}).transform((stream) => ({ ...stream, batch: { ...stream.batch, maxSize: stream.batch.maxSize ?? defaultBatchSize(stream.source.type) } }));

/**
 * batch.maxSize unless configured. postgres-wal: 10,000. Its batches keep
 * source transactions whole, and a larger batch lets a backlog's later
 * updates and deletes of rows it inserted fold into those inserts
 * (coalesce), so fewer rows are written, and as COPY. Every other source:
 * 1,000. The README's tuning table gives the measurements behind both.
 */
export function defaultBatchSize(source: (typeof SOURCE_TYPES)[number]): number {
  return source === 'postgres-wal' ? 10_000 : 1_000;
}

export const configSchema = z
  .strictObject({
    streams: z.array(streamSchema).min(1),
    checkpoints: z
      .strictObject({
        /** auto: in the sink's own transaction where the sink can, else a file. */
        store: z.enum(['auto', 'file', 'postgres', 'mssql', 'sqlite']).default('auto'),
        path: z.string().min(1).default('./data/checkpoints.json'),
      })
      .prefault({}),
    /** Dead letters of sinks that cannot keep them in their own transaction (supabase), as JSON lines. */
    deadLetters: z.strictObject({ path: z.string().min(1).default('./data/dead-letters.jsonl') }).prefault({}),
    /** The conflict log of sinks that cannot keep one in the target (supabase): JSON lines, by default `conflicts.jsonl` beside the dead letters. */
    conflicts: z.strictObject({ path: z.string().min(1).optional() }).prefault({}),
    http: z
      .strictObject({
        port: integer((n) => n.min(0).max(65535)).default(9464),
        host: z.string().min(1).default('0.0.0.0'),
        token: z.string().optional(),
        /** Shared secret of POST /api/sync/webhook (Supabase Database Webhooks); the receiver is off without it. */
        webhookSecret: z.string().min(16, 'use at least 16 characters').optional(),
        webhookHeader: z.string().min(1).default('x-webhook-secret'),
        webhookBodyLimit: integer((n) => n.positive()).default(256 * 1024),
      })
      .prefault({}),
    log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') }).prefault({}),
    /**
     * Run on a schedule instead of continuously (the older sync's SYNC_MODE=cron,
     * SYNC_CRON): at each tick every stream drains what is pending, then stops.
     */
    schedule: z
      .strictObject({
        cron: z.string().refine(isCronExpression, 'a five-field cron expression, e.g. "0 * * * *" (SYNC_CRON)'),
      })
      .optional(),
    shutdown: z.strictObject({ timeoutMs: integer((n) => n.positive()).default(30_000) }).prefault({}),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.streams.forEach((stream, i) => {
      if (seen.has(stream.name)) {
        ctx.addIssue({ code: 'custom', path: ['streams', i, 'name'], message: `duplicate stream name "${stream.name}"` });
      }
      seen.add(stream.name);
      // The two streams of a pair (one's source is the other's sink) must give a tie of change times to the same database, or they swap values.
      const preferred = (s: typeof stream) => ((s.prefer ?? (s.direction === 'reverse' ? 'sink' : 'source')) === 'source' ? s.source.url : s.sink.url);
      const runsBack = (other: typeof stream) => other.source.url === stream.sink.url && other.sink.url === stream.source.url;
      config.streams.slice(0, i).forEach((other, j) => {
        if (!runsBack(other)) return;
        if (preferred(other) !== preferred(stream)) {
          ctx.addIssue({
            code: 'custom',
            path: ['streams', i, 'prefer'],
            message: `streams[${j}] ("${other.name}") runs the other way between the same databases and gives ties to the other side; set prefer (or direction: reverse) so both name the same database`,
          });
        }
      });
      // Two-way with postgres-wal on one side: the change-time rule compares with the target's change log, which a
      // WAL-read database does not keep. The other stream then writes its older changes over newer ones there, and
      // the two sides end with each other's edit. The row's updated-at column is what both sides can compare.
      const walSide = config.streams.findIndex((other) => other.source.type === 'postgres-wal' && runsBack(other));
      // Both read with postgres-wal: the pair is judged once, from its second stream.
      if (walSide >= 0 && walSide !== i && (stream.source.type !== 'postgres-wal' || walSide < i)) {
        for (const [k, s] of [[walSide, config.streams[walSide]!], [i, stream]] as const) {
          s.tables.forEach((table, t) => {
            if (conflictRule(table) !== 'change-time') return;
            ctx.addIssue({
              code: 'custom',
              path: ['streams', k, 'tables', t, 'updatedAt'],
              message:
                `streams[${walSide}] ("${config.streams[walSide]!.name}") reads with postgres-wal the database streams[${i}] ("${stream.name}") writes into, and the two run both ways: ` +
                'a WAL-read database keeps no change log for the change-time rule to compare with, so ' +
                'concurrent edits would end swapped. Set conflict: newer-wins with updatedAt (the row\'s updated-at column) on the tables of both streams, or conflict: source-wins',
            });
          });
        }
      }
      // Two-way with Supabase: only a tombstone tells the portal that a key was deleted after an older insert arrives.
      if (stream.source.type === 'supabase-realtime' && !stream.source.tombstones) {
        const writer = config.streams.findIndex((s) => s.sink.type === 'supabase' && s.sink.url === stream.source.url);
        if (writer >= 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['streams', i, 'source', 'tombstones'],
            message: `streams[${writer}] writes into this Supabase project and this stream reads it back (two-way): set tombstones: true, so that a row deleted in the portal is not brought back by an older change`,
          });
        }
      }
      if (stream.source.truncate === 'apply' && !['postgres', 'sqlite'].includes(stream.sink.type)) {
        ctx.addIssue({
          code: 'custom',
          path: ['streams', i, 'source', 'truncate'],
          message: `"apply" needs a postgres or sqlite sink (this stream's sink is ${stream.sink.type}); use "dead-letter" or "ignore"`,
        });
      }
    });
  });

export type Config = z.output<typeof configSchema>;
export type StreamConfig = Config['streams'][number];
export type TableSettings = StreamConfig['tables'][number];
