import fs from 'node:fs';
import net from 'node:net';

/** A TCP port on loopback that nothing listens on right now (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
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

/** The end of a server's log file, for an error that says why it did not start. */
export function logTail(logFile: string, maxChars = 3000): string {
  try {
    const text = fs.readFileSync(logFile, 'utf8');
    return text.length > maxChars ? `…${text.slice(-maxChars)}` : text;
  } catch {
    return '(no server log)';
  }
}
