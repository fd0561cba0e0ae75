/**
 * Messages waiting to be decoded, kept as bytes: copied into large blocks,
 * one after the other with their length, so a backlog waiting in memory is a
 * few buffers rather than objects per change for the garbage collector to
 * copy again and again. (The copy is needed anyway: pg reuses the buffer a
 * message was read into.) Reading allocates nothing either: `next()` moves to
 * the oldest message, whose bytes are then `bytes[start, end)`.
 */
export class ByteQueue {
  private readonly blocks: Block[] = [];
  /** Emptied blocks, taken again before a new one is allocated. */
  private readonly spare: Block[] = [];
  private count = 0;
  /** The block of the message `next()` moved to; valid until the following `next()` or `push()`. */
  bytes: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;

  constructor(private readonly blockSize = 1 << 20) {}

  /** Messages waiting. */
  get length(): number {
    return this.count;
  }

  push(message: Buffer): void {
    const needed = 4 + message.length;
    let block = this.blocks.at(-1);
    if (!block || block.written + needed > block.bytes.length) {
      block = this.spare.pop() ?? { bytes: Buffer.allocUnsafe(this.blockSize), written: 0, read: 0 };
      if (block.bytes.length < needed) block = { bytes: Buffer.allocUnsafe(needed), written: 0, read: 0 };
      this.blocks.push(block);
    }
    block.bytes.writeUInt32BE(message.length, block.written);
    message.copy(block.bytes, block.written + 4);
    block.written += needed;
    this.count += 1;
  }

  /** Moves to the oldest message and takes it off the queue; false when there is none. */
  next(): boolean {
    let block = this.blocks[0];
    if (block && block.read === block.written && this.blocks.length > 1) {
      this.retire(this.blocks.shift()!);
      block = this.blocks[0];
    }
    if (!block || block.read === block.written) return false;
    const length = block.bytes.readUInt32BE(block.read);
    this.bytes = block.bytes;
    this.start = block.read + 4;
    this.end = this.start + length;
    block.read = this.end;
    this.count -= 1;
    return true;
  }

  clear(): void {
    for (const block of this.blocks.splice(0)) this.retire(block);
    this.count = 0;
  }

  private retire(block: Block): void {
    block.written = 0;
    block.read = 0;
    if (block.bytes.length === this.blockSize && this.spare.length < 2) this.spare.push(block);
  }
}

interface Block {
  bytes: Buffer;
  written: number;
  read: number;
}
