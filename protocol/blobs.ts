/** Named Float32Arrays sent in parts over a connection (job inputs and outputs), and their reassembly. */
import { STATE_PART_FLOATS } from './messages.ts';

export type Blobs = Record<string, Float32Array>;

/** Calls `send` for every part of every blob, awaiting each (bounded memory for large models). */
export async function sendBlobs(blobs: Blobs, send: (name: string, offset: number, total: number, data: Float32Array) => Promise<void>): Promise<void> {
  for (const [name, arr] of Object.entries(blobs)) {
    if (arr.length === 0) await send(name, 0, 0, arr);
    for (let off = 0; off < arr.length; off += STATE_PART_FLOATS) await send(name, off, arr.length, arr.subarray(off, Math.min(arr.length, off + STATE_PART_FLOATS)));
  }
}

/** Collects parts into whole blobs; refuses parts that do not fit what was announced. */
export class BlobAssembler {
  readonly blobs: Blobs = {};

  add(name: string, offset: number, total: number, data: Float32Array): void {
    let b = this.blobs[name];
    if (!b) b = this.blobs[name] = new Float32Array(total);
    if (b.length !== total) throw new Error(`blob ${name}: parts announce ${total} floats, earlier ones ${b.length}`);
    if (offset + data.length > total) throw new Error(`blob ${name}: part [${offset}, +${data.length}) is outside its ${total} floats`);
    b.set(data, offset);
  }
}
