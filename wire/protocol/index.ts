export { PROTOCOL_VERSION, type ProtocolVersion } from './version.ts';
export {
  defineMessage, getMessageDef, registeredTypes, MessageSet, toMessageSet,
  u32, shortString, bytes, float32Array,
  type MessageDef, type Message, type Fields,
} from './registry.ts';
export {
  encodeFrame, decodeFrame, peekType, ProtocolError, CloseCode,
  type CloseCodeValue, type ProtocolErrorKind, type DecodeOptions,
} from './codec.ts';
export { encodeMsgpack, decodeMsgpack, MsgpackError, DEFAULT_DECODE_LIMITS, type DecodeLimits } from './msgpack.ts';
export { Hello, Challenge, Auth, Welcome, ErrorMsg, NONCE_BYTES, PROOF_BYTES, role } from './messages.ts';
