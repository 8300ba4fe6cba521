/**
 * Wire protocol version. Every frame carries it in its `v` field; a peer that
 * receives a frame with another value refuses it (close code 4406). Bump it on
 * any incompatible change to the frame format or to a message schema.
 */
export const PROTOCOL_VERSION = 5 as const;
export type ProtocolVersion = typeof PROTOCOL_VERSION;
