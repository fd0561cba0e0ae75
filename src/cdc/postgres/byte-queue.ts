/** Bytes of a slab: four socket reads. */
const SLAB = 256 * 1024;
/** Read slabs kept for reuse (4 MiB): enough for the queue to fill again without allocating. */
const KEPT_SLABS = 16;

/**
 * XLogData waiting to be decoded, kept as bytes: runs of whole CopyData
 * messages ('d', length, payload). A backlog waiting in memory is a few
 * buffers rather than objects per change for the garbage collector to copy
 * again and again. Reading allocates nothing: `next()` moves to the oldest
 * message, whose payload is then `bytes[start, end)`.
 *
 * Runs are copied into slabs that are used again once read. Held instead,
 * the socket's buffers outlived two scavenges and were promoted, and their
 * memory (outside V8's heap) waited for a full collection: 48 MiB of it at
 * the peak of a 1M-change drain (bench:memory), against 18 MiB with slabs.
 * A message larger than a slab keeps the buffer it arrived in.
 */
export class ByteQueue {
  private segments: Segment[] = [];
  /** Segments before this one are read. */
  private head = 0;
  private count = 0;
  private held = 0;
  private readonly spare: Buffer[] = [];
  /** The buffer of the message `next()` moved to; valid until the following `next()`. */
  bytes: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;

  /** Messages waiting. */
  get length(): number {
    return this.count;
  }

  /** Bytes of the messages waiting. */
  get byteLength(): number {
    return this.held;
  }

  /** Queues `messages` whole CopyData messages, which are `bytes[start, end)`; copied, unless larger than a slab (then the buffer must not change afterwards). */
  push(bytes: Buffer, start: number, end: number, messages: number): void {
    const size = end - start;
    const tail = this.segments[this.segments.length - 1];
    if (tail?.slab && tail.bytes.length - tail.end >= size) {
      tail.end += bytes.copy(tail.bytes, tail.end, start, end);
    } else if (size <= SLAB) {
      const slab = this.spare.pop() ?? Buffer.allocUnsafeSlow(SLAB);
      this.segments.push({ bytes: slab, read: 0, end: bytes.copy(slab, 0, start, end), slab: true });
    } else {
      this.segments.push({ bytes, read: start, end, slab: false });
    }
    this.count += messages;
    this.held += end - start;
  }

  /** Moves to the oldest message and takes it off the queue; false when there is none. */
  next(): boolean {
    while (this.head < this.segments.length) {
      const segment = this.segments[this.head]!;
      if (segment.read < segment.end) {
        // 'd', then the length, which counts itself but not the type byte.
        const end = segment.read + 1 + segment.bytes.readUInt32BE(segment.read + 1);
        this.bytes = segment.bytes;
        this.start = segment.read + 5;
        this.end = end;
        this.held -= end - segment.read;
        segment.read = end;
        this.count -= 1;
        return true;
      }
      // Its last message was read at the previous next(): nothing refers to the slab any more.
      if (segment.slab && this.spare.length < KEPT_SLABS) this.spare.push(segment.bytes);
      this.head += 1;
      if (this.head === this.segments.length) this.clear();
      else if (this.head >= 1024) {
        // A queue that is never quite empty: drop the read segments now and then.
        this.segments = this.segments.slice(this.head);
        this.head = 0;
      }
    }
    return false;
  }

  clear(): void {
    this.segments = [];
    this.head = 0;
    this.count = 0;
    this.held = 0;
  }
}

interface Segment {
  /** A slab of this queue's, used again once read; otherwise the buffer the run arrived in. */
  slab: boolean;
  bytes: Buffer;
  read: number;
  end: number;
}
