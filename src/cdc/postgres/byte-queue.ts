/**
 * XLogData waiting to be decoded, kept as the bytes it arrived in: runs of
 * whole CopyData messages ('d', length, payload) in the buffers the socket
 * delivered. A backlog waiting in memory is a few buffers rather than objects
 * per change for the garbage collector to copy again and again, and queueing
 * copies nothing (Node.js hands every read a buffer of its own). Reading
 * allocates nothing either: `next()` moves to the oldest message, whose
 * payload is then `bytes[start, end)`.
 */
export class ByteQueue {
  private segments: Segment[] = [];
  /** Segments before this one are read. */
  private head = 0;
  private count = 0;
  private held = 0;
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

  /** Queues `messages` whole CopyData messages, which are `bytes[start, end)`; the buffer must not change afterwards. */
  push(bytes: Buffer, start: number, end: number, messages: number): void {
    this.segments.push({ bytes, read: start, end });
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
  bytes: Buffer;
  read: number;
  end: number;
}
