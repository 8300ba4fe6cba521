/**
 * Frame codec: `{ v: PROTOCOL_VERSION, t: '<type>', ...fields }` as one MessagePack map per
 * WebSocket binary message, validated against the registered schema of its type.
 */
import * as v from 'valibot';
import { decodeMsgpack, encodeMsgpack, MsgpackError, type DecodeLimits } from './msgpack.ts';
import { getMessageDef, toMessageSet, type Fields, type Message, type MessageDef, type MessageSet } from './registry.ts';
import { PROTOCOL_VERSION } from './version.ts';
import { TtcError } from '../../core/errors.ts';

/** WebSocket close codes used by ttc (4xxx = application range; 1009 is set by ws itself). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
  MALFORMED: 4400,
  AUTH_FAILED: 4401,
  /** a frame after the handshake failed its MAC (altered, injected, replayed or dropped in transit) */
  INTEGRITY: 4402,
  UNEXPECTED: 4403,
  VERSION: 4406,
  TIMEOUT: 4408,
  CONFLICT: 4409,
  ABORTED: 4410,
  INTERNAL: 4500,
} as const;
export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

export type ProtocolErrorKind =
  | 'malformed' // not decodable MessagePack / not a map / bad field types
  | 'too-large' // over maxPayload
  | 'version' // `v` is not PROTOCOL_VERSION
  | 'unknown-type' // `t` is not a registered type
  | 'unexpected-type' // registered, but not allowed in this state
  | 'invalid' // fails its schema
  | 'auth' // authentication failed
  | 'timeout'
  | 'conflict'
  | 'closed';

const CLOSE_FOR_KIND: Record<ProtocolErrorKind, number> = {
  malformed: CloseCode.MALFORMED,
  'too-large': CloseCode.TOO_BIG,
  version: CloseCode.VERSION,
  'unknown-type': CloseCode.MALFORMED,
  'unexpected-type': CloseCode.UNEXPECTED,
  invalid: CloseCode.MALFORMED,
  auth: CloseCode.AUTH_FAILED,
  timeout: CloseCode.TIMEOUT,
  conflict: CloseCode.CONFLICT,
  closed: CloseCode.GOING_AWAY,
};

export class ProtocolError extends TtcError {
  override name = 'ProtocolError';
  readonly closeCode: number;
  constructor(readonly kind: ProtocolErrorKind, message: string, closeCode?: number) {
    super('TTC_ERR_PROTOCOL', message);
    this.closeCode = closeCode ?? CLOSE_FOR_KIND[kind];
  }
}

export interface DecodeOptions {
  /** reject frames larger than this many bytes (the transport's maxPayload should match) */
  maxBytes?: number;
  limits?: Partial<DecodeLimits>;
}

/**
 * Encode a frame of `def` with `fields`. Validates against the schema unless
 * `validate: false` (hot paths whose fields are built by trusted code). `alloc` supplies the output
 * buffer (see {@link encodeMsgpack}).
 */
export function encodeFrame<D extends MessageDef>(def: D, fields: Fields<D>, opts: { validate?: boolean; alloc?: (size: number) => Buffer } = {}): Buffer {
  const frame = { v: PROTOCOL_VERSION, t: def.type, ...(fields as object) };
  if (opts.validate !== false) {
    const r = v.safeParse(def.schema, frame, { abortEarly: true });
    if (!r.success) throw new ProtocolError('invalid', `refusing to send an invalid "${def.type}" frame: ${describeIssue(r.issues[0])}`);
  }
  return encodeMsgpack(frame, opts.alloc);
}

/**
 * Decode and validate one frame. Accepts only the types in `allowed`; throws a
 * {@link ProtocolError} (never anything else) whose `kind`/`closeCode` say what was wrong.
 */
export function decodeFrame<D extends MessageDef>(bytes: Uint8Array, allowed: readonly D[] | MessageSet<D>, opts: DecodeOptions = {}): Message<D> {
  if (opts.maxBytes !== undefined && bytes.length > opts.maxBytes) {
    throw new ProtocolError('too-large', `frame of ${bytes.length} bytes exceeds the limit of ${opts.maxBytes}`);
  }
  let raw: unknown;
  try {
    raw = decodeMsgpack(bytes, opts.limits);
  } catch (err) {
    throw new ProtocolError('malformed', `malformed frame: ${err instanceof MsgpackError ? err.message : String(err)}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || ArrayBuffer.isView(raw)) {
    throw new ProtocolError('malformed', 'malformed frame: not a map');
  }
  const obj = raw as Record<string, unknown>;
  if (obj.v !== PROTOCOL_VERSION) {
    const got = typeof obj.v === 'number' ? String(obj.v) : obj.v === undefined ? 'none' : JSON.stringify(typeof obj.v);
    throw new ProtocolError('version', `protocol version ${got} not supported (this side speaks ${PROTOCOL_VERSION})`);
  }
  if (typeof obj.t !== 'string') throw new ProtocolError('malformed', 'malformed frame: missing message type "t"');
  const set = toMessageSet(allowed);
  const def = set.byType.get(obj.t);
  if (!def) {
    const type = JSON.stringify(obj.t.slice(0, 64));
    if (getMessageDef(obj.t)) throw new ProtocolError('unexpected-type', `unexpected message type ${type} here (expected ${set.types.join('|')})`);
    throw new ProtocolError('unknown-type', `unknown message type ${type}`);
  }
  let r: v.SafeParseResult<D['schema']>;
  try {
    r = v.safeParse(def.schema, obj, { abortEarly: true });
  } catch (err) {
    throw new ProtocolError('invalid', `invalid "${def.type}" frame: ${(err as Error).message}`);
  }
  if (!r.success) throw new ProtocolError('invalid', `invalid "${def.type}" frame: ${describeIssue(r.issues[0])}`);
  return r.output as Message<D>;
}

function describeIssue(issue: v.BaseIssue<unknown> | undefined): string {
  if (!issue) return 'unknown issue';
  const path = v.getDotPath(issue);
  return `${path ? path + ': ' : ''}${issue.message}`.slice(0, 200);
}

/** Peek at a frame's type without validating (for logs); undefined if not decodable. */
export function peekType(bytes: Uint8Array): string | undefined {
  try {
    const raw = decodeMsgpack(bytes) as Record<string, unknown>;
    return typeof raw?.t === 'string' ? raw.t.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}
