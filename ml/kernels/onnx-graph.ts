/**
 * A tiny ONNX model writer: just enough protobuf to describe the single-op graphs that the fast
 * CPU matmul path hands to onnxruntime (no `onnx`/`protobufjs` dependency). Field numbers are from
 * onnx/onnx.proto3 (ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto).
 */

type Field = Uint8Array;

function varint(n: number): number[] {
  // negative values (e.g. -1 in a Reshape shape) as protobuf does: 64-bit two's complement, 10 bytes
  let v = n < 0 ? BigInt.asUintN(64, BigInt(n)) : BigInt(n);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

function concat(parts: Field[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** wire type 0 */
function fVarint(field: number, value: number): Field {
  return Uint8Array.from([...varint(field * 8), ...varint(value)]);
}

/** wire type 2 (strings, bytes, sub-messages) */
function fBytes(field: number, bytes: Uint8Array): Field {
  return concat([Uint8Array.from([...varint(field * 8 + 2), ...varint(bytes.length)]), bytes]);
}

function fString(field: number, s: string): Field {
  return fBytes(field, new TextEncoder().encode(s));
}

/** wire type 5 */
function fFloat(field: number, x: number): Field {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return concat([Uint8Array.from(varint(field * 8 + 5)), b]);
}

export type AttrValue = number | { float: number } | string | number[];

export interface NodeSpec {
  op: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
}

export interface ValueSpec {
  name: string;
  /** ONNX TensorProto.DataType: 1 = FLOAT */
  elemType?: number;
  /** rank; every dim symbolic, so one session serves all shapes of that rank */
  rank: number;
}

function attribute(name: string, v: AttrValue): Field {
  // AttributeProto: name=1, f=2, i=3, s=4, ints=8, type=20 (FLOAT=1, INT=2, STRING=3, INTS=7)
  if (typeof v === 'number') return concat([fString(1, name), fVarint(3, v), fVarint(20, 2)]);
  if (typeof v === 'string') return concat([fString(1, name), fString(4, v), fVarint(20, 3)]);
  if (Array.isArray(v)) {
    return concat([fString(1, name), ...v.map((i) => fVarint(8, i)), fVarint(20, 7)]);
  }
  return concat([fString(1, name), fFloat(2, v.float), fVarint(20, 1)]);
}

function node(n: NodeSpec, idx: number): Field {
  // NodeProto: input=1, output=2, name=3, op_type=4, attribute=5, domain=7
  const parts: Field[] = [];
  for (const i of n.inputs) parts.push(fString(1, i));
  for (const o of n.outputs) parts.push(fString(2, o));
  parts.push(fString(3, `n${idx}`), fString(4, n.op));
  for (const [k, v] of Object.entries(n.attrs ?? {})) parts.push(fBytes(5, attribute(k, v)));
  if (n.domain) parts.push(fString(7, n.domain));
  return concat(parts);
}

function valueInfo(v: ValueSpec): Field {
  // ValueInfoProto{name=1, type=2}; TypeProto{tensor_type=1}; Tensor{elem_type=1, shape=2};
  // TensorShapeProto{dim=1}; Dimension{dim_param=2}
  const dims: Field[] = [];
  for (let i = 0; i < v.rank; i++) dims.push(fBytes(1, fString(2, `${v.name}_d${i}`)));
  const tensorType = concat([fVarint(1, v.elemType ?? 1), fBytes(2, concat(dims))]);
  return concat([fString(1, v.name), fBytes(2, fBytes(1, tensorType))]);
}

/** Serialises a one-graph ONNX model (IR version 8, default opset 17 plus com.microsoft 1). */
export function buildModel(spec: { nodes: NodeSpec[]; inputs: ValueSpec[]; outputs: ValueSpec[] }): Uint8Array {
  const graph = concat([
    ...spec.nodes.map((n, i) => fBytes(1, node(n, i))),
    fString(2, 'g'),
    ...spec.inputs.map((v) => fBytes(11, valueInfo(v))),
    ...spec.outputs.map((v) => fBytes(12, valueInfo(v))),
  ]);
  // ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8 (domain=1, version=2)
  return concat([
    fVarint(1, 8),
    fString(2, 'ttc'),
    fBytes(7, graph),
    fBytes(8, fVarint(2, 17)),
    fBytes(8, concat([fString(1, 'com.microsoft'), fVarint(2, 1)])),
  ]);
}
