import pg from 'pg';
import { connectError, endSilent, pgSocket } from '../../db/postgres/connection.js';
import { readCopyData, type CopyDataHandlers } from './copy-data-reader.js';
import { standbyStatus } from './wal-protocol.js';

/**
 * The WAL source's replication connection (one client at a time; a
 * reconnect opens the next) and its upkeep: status updates to the server,
 * the liveness watch, and pausing the socket while the sink is behind.
 */
export class ReplicationConnection {
  private client: pg.Client | undefined;
  private paused = false;
  /** When the server last sent anything on the replication connection (liveness). */
  private lastServerMessageAt = 0;
  private livenessTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  /** The client connectAhead began connecting, until `open` takes it. */
  private ahead: Promise<pg.Client> | undefined;

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  /** A new client connects with its socket flowing. */
  reset(): void {
    this.paused = false;
  }

  /** Starts connecting the client the next `open` returns, while the source opens; `open` reports its failure. */
  connectAhead(onError: (error: Error) => void): void {
    if (this.ahead) return;
    const client = this.newClient(onError);
    this.client = client;
    this.ahead = this.connect(client);
    // Reported by `open`, or dropped with the client by `close`.
    this.ahead.catch(() => {});
  }

  /** A client in replication mode, connected; it is `client` from before it connects, so a stop ends it while it does. */
  async open(onError: (error: Error) => void): Promise<pg.Client> {
    const ahead = this.ahead;
    this.ahead = undefined;
    if (ahead) return ahead;
    const client = this.newClient(onError);
    this.client = client;
    return this.connect(client);
  }

  private async connect(client: pg.Client): Promise<pg.Client> {
    try {
      await client.connect();
    } catch (error) {
      throw connectError(error, 'source.url');
    }
    return client;
  }

  private newClient(onError: (error: Error) => void): pg.Client {
    const client = new pg.Client({
      connectionString: this.url,
      replication: 'database',
      application_name: 'cdc-sync-wal',
      connectionTimeoutMillis: Math.min(this.timeoutMs, 10_000),
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    } as pg.ClientConfig);
    // pg emits 'error' when the connection dies; the query in progress (START_REPLICATION) fails with it and the loop reconnects.
    client.on('error', onError);
    return client;
  }

  /** Reads the client's CopyData (readCopyData); every message counts as the server heard from. */
  readCopyData(client: pg.Client, handlers: CopyDataHandlers): void {
    readCopyData(client, {
      xlog: (bytes, start, end, messages) => {
        this.lastServerMessageAt = performance.now();
        handlers.xlog(bytes, start, end, messages);
      },
      keepalive: (walEnd, replyRequested) => {
        this.lastServerMessageAt = performance.now();
        handlers.keepalive(walEnd, replyRequested);
      },
    });
  }

  /**
   * Pauses the socket while more than `capacity` changes wait (decoded or
   * not) or more than `byteCapacity` bytes of them wait undecoded; resumes
   * once both are down to half.
   */
  controlFlow(held: number, capacity: number, heldBytes: number, byteCapacity: number): void {
    if (!this.paused && (held > capacity || heldBytes > byteCapacity)) {
      this.paused = true;
      pgSocket(this.client)?.pause();
    } else if (this.paused && held <= capacity / 2 && heldBytes <= byteCapacity / 2) {
      this.paused = false;
      pgSocket(this.client)?.resume();
    }
  }

  startStatus(send: () => void, intervalMs: number): void {
    this.statusTimer = setInterval(send, intervalMs);
  }

  /** A standby status update: written up to `received` (or the flush position, when further), flushed and applied up to `flushPosition()`. */
  sendStatus(received: bigint, flushPosition: () => bigint, replyRequested: boolean): void {
    const client = this.client as unknown as { connection?: { sendCopyFromChunk(b: Buffer): void } } | undefined;
    if (!client?.connection || received === 0n) return;
    const flush = flushPosition();
    try {
      client.connection.sendCopyFromChunk(standbyStatus(received > flush ? received : flush, flush, flush, replyRequested));
    } catch {
      // The connection is going away; the reconnect reports it.
    }
  }

  /**
   * A walsender that has nothing to send and hears from us says nothing, so
   * silence alone proves nothing: after half the timeout without a message a
   * status asks for a reply (the walsender answers it at once with a
   * keepalive: walsender.c, ProcessStandbyReplyMessage), and a whole timeout
   * of silence ends the connection, which the reconnect loop reports. While the
   * socket is paused (the sink is behind) the server's messages wait unread:
   * nothing is judged then.
   */
  watchLiveness(client: pg.Client, askReply: () => void): void {
    const timeoutMs = this.timeoutMs;
    this.lastServerMessageAt = performance.now();
    let asked = 0;
    this.livenessTimer = setInterval(() => {
      if (this.paused) {
        this.lastServerMessageAt = performance.now();
        return;
      }
      const silent = performance.now() - this.lastServerMessageAt;
      if (silent >= timeoutMs) {
        endSilent(client, this.url, timeoutMs, ' (replication)');
      } else if (silent >= timeoutMs / 2 && performance.now() - asked >= timeoutMs / 4) {
        asked = performance.now();
        askReply();
      }
    }, Math.max(50, Math.min(1000, timeoutMs / 10)));
    this.livenessTimer.unref();
  }

  close(): void {
    clearInterval(this.statusTimer);
    this.statusTimer = undefined;
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
    const client = this.client;
    this.client = undefined;
    void client?.end().catch(() => {});
    this.ahead = undefined;
  }
}
