/**
 * ttc's application protocol, on top of the generic frame layer (wire/): the coordinator ↔ worker
 * and CLI ↔ coordinator messages (messages.ts), the typed task and job specs and results they carry
 * (specs.ts), the status shapes (status.ts) and bulk data as blob streams (blobs.ts).
 * docs/protocol.md describes the sequences.
 */
export * as M from './messages.ts';
export * from './specs.ts';
export * from './status.ts';
export { sendBlobs, BlobStreams, type Blobs } from './blobs.ts';
