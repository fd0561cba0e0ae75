import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { copyDataSplitter, readCopyData } from '../../../src/cdc/postgres/copy-data-reader.js';
import { ByteQueue } from '../../../src/cdc/postgres/byte-queue.js';
import { createTestDatabase } from '../../support/test-database.js';
import { backendMessage } from '../../support/pg-messages.js';

/** XLogData: 'w', WAL start, WAL end, send time, then the payload. */
function xlog(payload: string): Buffer {
  return backendMessage('d', Buffer.concat([Buffer.from('w'), Buffer.alloc(24), Buffer.from(payload, 'utf8')]));
}

/** Primary keepalive: 'k', WAL end, send time, reply requested. */
function keepalive(walEnd: bigint, reply: boolean): Buffer {
  const body = Buffer.alloc(18);
  body.write('k', 0, 'latin1');
  body.writeBigUInt64BE(walEnd, 1);
  body[17] = reply ? 1 : 0;
  return backendMessage('d', body);
}

const STREAM = [
  backendMessage('W', Buffer.from([0, 0, 0])), // CopyBothResponse
  xlog('first'),
  xlog('second, ünïcode'),
  keepalive(0x1_0000_0010n, true),
  xlog('third'),
  backendMessage('N', Buffer.from('Mnotice\0\0')),
  xlog(''),
  keepalive(0x20n, false),
  backendMessage('E', Buffer.from('SERROR\0Mgone\0\0')),
];

/** What a reader makes of `chunks`, as one ordered log. */
function read(chunks: Buffer[]): string[] {
  const log: string[] = [];
  const queue = new ByteQueue();
  const splitter = copyDataSplitter((whole) => log.push(`pg ${whole.toString('latin1', 0, 1)} ${whole.length}`), {
    xlog: (bytes, start, end, messages) => {
      queue.push(bytes, start, end, messages);
      while (queue.next()) log.push(`xlog ${queue.bytes.toString('utf8', queue.start + 25, queue.end)}`);
    },
    keepalive: (walEnd, reply) => log.push(`keepalive ${walEnd.toString(16)} ${reply}`),
  });
  for (const chunk of chunks) splitter(chunk);
  return log;
}

describe('copyDataSplitter', () => {
  const expected = [
    'pg W 8',
    'xlog first',
    'xlog second, ünïcode',
    'keepalive 100000010 true',
    'xlog third',
    `pg N ${5 + 9}`,
    'xlog ',
    'keepalive 20 false',
    `pg E ${5 + 14}`,
  ];

  it('hands XLogData and keepalives over and every other message whole to pg, in the order they came', () => {
    expect(read([Buffer.concat(STREAM)])).toEqual(expected);
  });

  it('reads the same wherever the socket splits the stream, inside a header included', () => {
    const all = Buffer.concat(STREAM);
    for (let split = 1; split < all.length; split += 1) {
      expect(read([all.subarray(0, split), all.subarray(split)])).toEqual(expected);
    }
    expect(read([...all].map((byte) => Buffer.from([byte])))).toEqual(expected);
  });

  it('keeps a message split across reads apart from the read it started in', () => {
    const all = Buffer.concat([xlog('a'), xlog('b')]);
    const first = Buffer.from(all.subarray(0, all.length - 3));
    const log = read([first, all.subarray(all.length - 3)]);
    first.fill(0);
    expect(log).toEqual(['xlog a', 'xlog b']);
  });
});

describe('readCopyData', () => {
  it('refuses a client whose socket pg does not read as expected (here: not connected)', () => {
    const client = new pg.Client({ connectionString: 'postgres://127.0.0.1:1/none' });
    expect(() => readCopyData(client, { xlog: () => {}, keepalive: () => {} })).toThrow(/not as expected/);
  });

  it('takes the socket over from pg, which still runs queries on it', async () => {
    const db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const seen: string[] = [];
      readCopyData(client, { xlog: () => seen.push('xlog'), keepalive: () => seen.push('keepalive') });
      const { rows } = await client.query<{ n: number }>('SELECT 41 + 1 AS n');
      expect(rows[0]!.n).toBe(42);
      await expect(client.query('SELECT * FROM no_such_table')).rejects.toThrow(/no_such_table/);
      expect(seen).toEqual([]);
    } finally {
      await client.end();
    }
  });
});
