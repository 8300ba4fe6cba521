/**
 * Reusable send buffers for large frames (the segments of a collective): a frame's buffer goes back
 * to the pool once ws has handed it to the kernel (the send callback), so steady-state sends
 * allocate nothing (fresh 1 MiB ArrayBuffers per frame cost page faults and external-memory GCs).
 * Pass `pool.alloc` to encodeFrame and `pool.release(frame)` from the send callback.
 */
export class FramePool {
  private readonly free: Buffer[] = [];
  constructor(readonly capacity: number, readonly maxFree = 64) {}
  readonly alloc = (size: number): Buffer => {
    if (size > this.capacity || size < 16384) return Buffer.allocUnsafe(size);
    return (this.free.pop() ?? Buffer.allocUnsafeSlow(this.capacity)).subarray(0, size);
  };
  release(frame: Buffer): void {
    const ab = frame.buffer;
    if (ab.byteLength === this.capacity && frame.byteOffset === 0 && this.free.length < this.maxFree) {
      this.free.push(Buffer.from(ab, 0, this.capacity));
    }
  }
}
