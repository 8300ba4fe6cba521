import test from 'ava';
import { encodeSafetensors, decodeSafetensors, SafetensorsError } from '../../ml/checkpoint/safetensors.ts';
import { Rng } from '../../core/rng.ts';

test('safetensors round-trip keeps names, dtypes, shapes, values and metadata', (t) => {
  const w = Float32Array.from({ length: 12 }, (_, i) => i / 7);
  const ids = Int32Array.from([1, -2, 3]);
  const buf = encodeSafetensors({ w: { dtype: 'F32', shape: [3, 4], data: w }, ids: { dtype: 'I32', shape: [3], data: ids } }, { note: 'x' });
  t.is(Number(buf.readBigUInt64LE(0)) % 8, 0);
  const back = decodeSafetensors(buf);
  t.deepEqual(back.metadata, { note: 'x' });
  t.deepEqual(back.tensors.w.shape, [3, 4]);
  t.deepEqual(Array.from(back.tensors.w.data), Array.from(w));
  t.deepEqual(Array.from(back.tensors.ids.data), [1, -2, 3]);
});

test('safetensors decoding rejects malformed input with a clear error and never crashes', (t) => {
  const good = encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
  t.throws(() => decodeSafetensors(new Uint8Array(3)), { instanceOf: SafetensorsError, message: /too short/ });
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(10n ** 12n, 0);
  t.throws(() => decodeSafetensors(huge), { instanceOf: SafetensorsError, message: /header length/ });
  const badJson = Buffer.concat([Buffer.alloc(8), Buffer.from('{oops')]);
  badJson.writeBigUInt64LE(5n, 0);
  t.throws(() => decodeSafetensors(badJson), { instanceOf: SafetensorsError, message: /not JSON/ });
  const header = (h: unknown, data = 8) => {
    const j = Buffer.from(JSON.stringify(h));
    const b = Buffer.alloc(8 + j.length + data);
    b.writeBigUInt64LE(BigInt(j.length), 0);
    j.copy(b, 8);
    return b;
  };
  t.throws(() => decodeSafetensors(header({ w: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } })), { message: /unsupported dtype/ });
  t.throws(() => decodeSafetensors(header({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } })), { message: /expected 12/ });
  t.throws(() => decodeSafetensors(header({ w: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } })), { message: /outside/ });
  t.throws(() => decodeSafetensors(header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } })), { message: /overlap/ });
  // Random bytes: always a SafetensorsError, never anything else.
  const rng = new Rng(7);
  for (let i = 0; i < 300; i++) {
    const b = Buffer.from(good);
    for (let k = 0; k < 4; k++) b[rng.int(b.length)] = rng.int(256);
    try {
      decodeSafetensors(b);
    } catch (e) {
      t.true(e instanceof SafetensorsError, String(e));
    }
  }
});
