/** A backend message as PostgreSQL frames it: type byte, length (counting itself), body. https://www.postgresql.org/docs/current/protocol-message-formats.html */
export function backendMessage(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/** A tuple column pgoutput sends as 'u': an unchanged TOAST value, not sent. */
export const UNCHANGED = Symbol('unchanged TOAST value');

/**
 * A pgoutput Insert: 'I', relation id, 'N', then the tuple, per column 'n' (NULL), 'u' (unchanged TOAST) or 't', a
 * 32-bit length and the text. https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */
export function pgoutputInsert(columns: readonly (string | null | typeof UNCHANGED)[], relationId = 16384): Buffer {
  const head = Buffer.alloc(8);
  head.write('I', 0, 'latin1');
  head.writeUInt32BE(relationId, 1);
  head.write('N', 5, 'latin1');
  head.writeInt16BE(columns.length, 6);
  const parts: Buffer[] = [head];
  for (const column of columns) {
    if (column === null) parts.push(Buffer.from('n'));
    else if (column === UNCHANGED) parts.push(Buffer.from('u'));
    else {
      const bytes = Buffer.from(column, 'utf8');
      const length = Buffer.alloc(4);
      length.writeInt32BE(bytes.length);
      parts.push(Buffer.from('t'), length, bytes);
    }
  }
  return Buffer.concat(parts);
}
