import net from 'node:net';

/**
 * How the proxy treats connections, as the network between cdc-sync and a
 * database can:
 * - `pass`: bytes flow both ways;
 * - `cut`: open connections are reset (a restart of a middlebox, a dropped VPN); new ones pass;
 * - `refuse`: new connections are reset at once (the port is closed); open ones are reset too;
 * - `blackhole`: every byte in either direction is dropped and new connections are
 *   accepted but never answered (a firewall that drops, a paused VM): no RST, no FIN,
 *   nothing a socket can notice by itself.
 */
export type ProxyMode = 'pass' | 'cut' | 'refuse' | 'blackhole';

export interface TcpProxy {
  port: number;
  /** `postgres://…@127.0.0.1:<proxy port>/…` for a URL of the upstream server. */
  url(upstreamUrl: string): string;
  mode(next: ProxyMode): void;
  readonly connections: number;
  close(): Promise<void>;
}

/** A TCP proxy on loopback in front of `upstream` (host:port on this machine). */
export async function startTcpProxy(upstream: { host: string; port: number }): Promise<TcpProxy> {
  let current: ProxyMode = 'pass';
  const open = new Set<{ client: net.Socket; server: net.Socket; orphaned?: boolean }>();
  // Half-open sockets, so that a FIN is forwarded by hand, and swallowed by a black hole like every other packet.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    if (current === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const pair: { client: net.Socket; server: net.Socket; orphaned?: boolean } = {
      client,
      server: net.connect({ port: upstream.port, host: upstream.host, allowHalfOpen: true }),
    };
    open.add(pair);
    // A side that closes while the hole swallows everything leaves the other side waiting, as a real
    // black hole does; the pair is reset when the network comes back (resetAll).
    const end = () => {
      if (current === 'blackhole') {
        pair.orphaned = true;
        return;
      }
      open.delete(pair);
      pair.client.destroy();
      pair.server.destroy();
    };
    client.on('error', end).on('close', end);
    pair.server.on('error', end).on('close', end);
    // A FIN is half a close: with allowHalfOpen no 'close' follows it, so a FIN the hole swallowed marks
    // the pair too. TCP retransmits a FIN until it is acknowledged, so the peer learns of it when the
    // hole ends, as a server mid-COPY must to roll back and release its locks.
    client.on('end', () => {
      if (current === 'blackhole') pair.orphaned = true;
      else pair.server.end();
    });
    pair.server.on('end', () => {
      if (current === 'blackhole') pair.orphaned = true;
      else client.end();
    });
    // Bytes are forwarded only outside a black hole, which swallows them.
    client.on('data', (data: Buffer) => {
      if (current !== 'blackhole') pair.server.write(data);
    });
    pair.server.on('data', (data: Buffer) => {
      if (current !== 'blackhole') client.write(data);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const reset = (which: (pair: { orphaned?: boolean }) => boolean) => {
    for (const pair of open) {
      if (!which(pair)) continue;
      open.delete(pair);
      if (!pair.client.destroyed) pair.client.resetAndDestroy();
      pair.server.destroy();
    }
  };
  const resetAll = () => reset(() => true);
  return {
    port,
    url: (upstreamUrl) => {
      const url = new URL(upstreamUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    mode(next) {
      current = next;
      if (next === 'cut' || next === 'refuse') resetAll();
      // A side that closed inside the hole: its peer learns it now (the FIN or RST gets through at last).
      // Connections nobody closed flow on, so a client that did not notice the hole is not rescued by a reset.
      if (next === 'pass') reset((pair) => pair.orphaned === true);
      if (next === 'cut') current = 'pass';
    },
    get connections() {
      return open.size;
    },
    close: async () => {
      resetAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
