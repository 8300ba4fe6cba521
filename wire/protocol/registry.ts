/**
 * Message registry: every frame type is declared once with `defineMessage(type, fields)`, where
 * `fields` are valibot schemas. Modules add their own types (the ring adds `chunk`, the
 * coordinator protocol adds its own) without touching this file.
 */
import * as v from 'valibot';
import { PROTOCOL_VERSION } from './version.ts';

type Header<T extends string> = {
  v: v.LiteralSchema<typeof PROTOCOL_VERSION, undefined>;
  t: v.LiteralSchema<T, undefined>;
};

export interface MessageDef<T extends string = string, E extends v.ObjectEntries = v.ObjectEntries> {
  readonly type: T;
  /** strict object schema: unknown keys are rejected */
  readonly schema: v.StrictObjectSchema<E & Header<T>, undefined>;
}

/** The decoded, validated frame of a definition, including `v` and `t`. */
export type Message<D extends MessageDef> = v.InferOutput<D['schema']>;
/** What a sender supplies: the frame without `v` and `t`. */
export type Fields<D extends MessageDef> = Omit<Message<D>, 'v' | 't'>;

const TYPE_NAME = /^[a-z][a-z0-9._-]{0,63}$/;
const registry = new Map<string, MessageDef>();

/**
 * Declare a message type. Type names are lower-case (`[a-z][a-z0-9._-]*`, ≤ 64 chars); use a
 * prefix for a module's family (`coord.assign`, …). `v` and `t` are reserved field names.
 * Declaring the same name twice throws.
 */
export function defineMessage<const T extends string, const E extends v.ObjectEntries>(type: T, fields: E): MessageDef<T, E> {
  if (!TYPE_NAME.test(type)) throw new Error(`defineMessage: invalid type name ${JSON.stringify(type)}`);
  if ('v' in fields || 't' in fields) throw new Error(`defineMessage(${type}): "v" and "t" are reserved field names`);
  if (registry.has(type)) throw new Error(`defineMessage: message type "${type}" is already defined`);
  const schema = v.strictObject({ ...fields, v: v.literal(PROTOCOL_VERSION), t: v.literal(type) }) as unknown as
    v.StrictObjectSchema<E & Header<T>, undefined>;
  const def: MessageDef<T, E> = Object.freeze({ type, schema });
  registry.set(type, def as unknown as MessageDef);
  return def;
}

/** Look up a registered definition by type name. */
export function getMessageDef(type: string): MessageDef | undefined {
  return registry.get(type);
}

/** All registered type names (for docs and diagnostics). */
export function registeredTypes(): string[] {
  return [...registry.keys()].sort();
}

/** A set of message types accepted in one connection state; build once, reuse per frame. */
export class MessageSet<D extends MessageDef = MessageDef> {
  readonly byType: ReadonlyMap<string, D>;
  constructor(readonly defs: readonly D[]) {
    this.byType = new Map(defs.map((d) => [d.type, d]));
  }
  has(type: string): boolean { return this.byType.has(type); }
  get types(): string[] { return [...this.byType.keys()]; }
}

const setCache = new WeakMap<readonly MessageDef[], MessageSet>();
export function toMessageSet<D extends MessageDef>(allowed: readonly D[] | MessageSet<D>): MessageSet<D> {
  if (allowed instanceof MessageSet) return allowed;
  let s = setCache.get(allowed) as MessageSet<D> | undefined;
  if (!s) { s = new MessageSet(allowed); setCache.set(allowed, s); }
  return s;
}

// ---- reusable field schemas ------------------------------------------------------------------

// `instance(Uint8Array)` would infer Uint8Array<ArrayBuffer>; Buffers and views are ArrayBufferLike.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Ctor<T> = new (...args: any[]) => T;
const Uint8ArrayLike = Uint8Array as unknown as Ctor<Uint8Array<ArrayBufferLike>>;
const Float32ArrayLike = Float32Array as unknown as Ctor<Float32Array<ArrayBufferLike>>;

/** Non-negative integer < 2^32. */
export const u32 = () => v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff));
/** Short printable name (peer names, roles' instance names). */
export const shortString = (max = 128) => v.pipe(v.string(), v.minLength(1), v.maxLength(max));
/** Raw bytes with an exact or maximum length. */
export const bytes = (opts: { length?: number; max?: number } = {}) =>
  v.pipe(
    v.instance(Uint8ArrayLike),
    v.check((b) => (opts.length === undefined || b.length === opts.length) && (opts.max === undefined || b.length <= opts.max),
      opts.length !== undefined ? `expected exactly ${opts.length} bytes` : `expected at most ${opts.max} bytes`),
  );
/** A Float32Array of at most `max` elements (binary on the wire, never a list of numbers). */
export const float32Array = (max = 0xffffffff) =>
  v.pipe(v.instance(Float32ArrayLike), v.check((a) => a.length <= max, `expected at most ${max} floats`));
