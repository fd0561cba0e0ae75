/** A backend message as PostgreSQL frames it: type byte, length (counting itself), body. https://www.postgresql.org/docs/current/protocol-message-formats.html */
export function backendMessage(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}
