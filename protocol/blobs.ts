/**
 * Bulk data over a connection: named Float32Arrays (weights, optimizer moments, masks, a job's
 * inputs) sent as `coord.blob` parts of a stream, each part awaited until it reached the socket so
 * memory stays bounded for large models, and reassembled on the other side. The one way ttc moves
 * tensors between the coordinator and a worker (loading a ring, fetching a checkpoint, jobs).
 */
import type { Connection } from '../wire/net/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import { ProtocolError } from '../wire/protocol/index.ts';
import { Blob, BLOB_PART_FLOATS } from './messages.ts';

export type Blobs = Record<string, Float32Array>;

/** Sends every blob of `stream` in parts (an empty blob as one empty part). */
export async function sendBlobs(conn: Pick<Connection, 'sendAsync'>, stream: string, blobs: Blobs): Promise<void> {
  for (const [name, arr] of Object.entries(blobs)) {
    if (arr.length === 0) await conn.sendAsync(Blob, { stream, name, offset: 0, total: 0, data: arr });
    for (let off = 0; off < arr.length; off += BLOB_PART_FLOATS) {
      await conn.sendAsync(Blob, { stream, name, offset: off, total: arr.length, data: arr.subarray(off, Math.min(arr.length, off + BLOB_PART_FLOATS)) });
    }
  }
}

/**
 * The blobs of the streams open on one connection. A part that does not fit what its blob
 * announced, or a blob larger than `maxFloats`, is refused with a ProtocolError (the sender is
 * broken or hostile: nothing is allocated for it).
 */
export class BlobStreams {
  private readonly open = new Map<string, Blobs>();

  constructor(private readonly maxFloats: number) {}

  add(msg: Message<typeof Blob>): void {
    if (msg.total > this.maxFloats) throw new ProtocolError('invalid', `blob ${msg.stream}/${msg.name}: ${msg.total} floats, more than the ${this.maxFloats} allowed here`);
    let blobs = this.open.get(msg.stream);
    if (!blobs) this.open.set(msg.stream, (blobs = {}));
    let b = blobs[msg.name];
    if (!b) b = blobs[msg.name] = new Float32Array(msg.total);
    if (b.length !== msg.total) throw new ProtocolError('invalid', `blob ${msg.stream}/${msg.name}: parts announce ${msg.total} floats, earlier ones ${b.length}`);
    if (msg.offset + msg.data.length > msg.total) throw new ProtocolError('invalid', `blob ${msg.stream}/${msg.name}: part [${msg.offset}, +${msg.data.length}) is outside its ${msg.total} floats`);
    b.set(msg.data, msg.offset);
  }

  /** The blobs received on `stream` (empty when none), forgotten here. */
  take(stream: string): Blobs {
    const blobs = this.open.get(stream) ?? {};
    this.open.delete(stream);
    return blobs;
  }

  /** Forgets every stream whose name starts with `prefix` (e.g. a ring formation that was left). */
  dropPrefix(prefix: string): void {
    for (const k of [...this.open.keys()]) if (k.startsWith(prefix)) this.open.delete(k);
  }
}
