import fs from 'node:fs';
import net from 'node:net';

/**
 * A TCP port on loopback that nothing listens on right now, below Linux's
 * ephemeral range (`net.ipv4.ip_local_port_range`, 32768–60999 by default):
 * a port from that range can be taken as the local port of any outgoing
 * connection before the server that was given it binds it (a NATS route port
 * was, in a full test run). Falls back to a port the OS picks.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await listens(host, port)) return port;
  }
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function listens(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** The end of a server's log file, for an error that says why it did not start. */
export function logTail(logFile: string, maxChars = 3000): string {
  try {
    const text = fs.readFileSync(logFile, 'utf8');
    return text.length > maxChars ? `…${text.slice(-maxChars)}` : text;
  } catch {
    return '(no server log)';
  }
}
