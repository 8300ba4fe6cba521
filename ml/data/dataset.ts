/**
 * Pretraining dataset: corpus → tokenizer → packed sequences, cached on disk.
 *
 * Cache layout: `<cacheDir>/<cacheKey>/`
 *   tokenizer.json   `{ format, sha256, tokenizer }` (sha256 of JSON.stringify(tokenizer))
 *   train.bin        packed train sequences (see writePacked)
 *   validation.bin   packed validation sequences
 *   info.json        human-readable inputs and stats (not read back)
 * The key hashes the format version, every corpus file's name and size, seed,
 * classificationSeed, vocabSize, seqLen and validationFraction. Every file is written to
 * a temporary name and renamed into place (atomic), so a killed build (even SIGKILL) leaves
 * whole files or none; the temporary files of killed writers are never read, and are removed
 * by the next build of the entry once they are old. A file that fails its checks
 * (magic, header, size, sha256) is reported through `log` and rebuilt; it is never used.
 * (A tokenizer.json that verifies is kept when only the packed files are bad, since it
 * depends on exactly the inputs of the key.)
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../../core/rng.ts';
import { DataError } from '../../core/errors.ts';
import { isTempName, writeFileAtomic } from '../../core/fs.ts';
import { runPaced } from '../../core/pace.ts';
import { corpusFiles, loadPretrainCorpus } from './corpus.ts';
import { packSequences } from './packing.ts';
import { Tokenizer } from './tokenizer.ts';

/** Bump when the corpus parsing, tokenizer, packing or file format changes. */
export const DATA_FORMAT_VERSION = 1;
const MAGIC = Buffer.from('TTCSEQ01', 'ascii');

export interface PrepareDatasetOptions {
  seed: number;
  seqLen: number;
  vocabSize: number;
  validationFraction: number;
  extraTextFiles?: string[];
  cacheDir: string;
  /** Seed of the downstream classification set kept out of the corpus (default: seed). */
  classificationSeed?: number;
  /** Receives cache diagnostics (corrupt files, rebuilds). Default: console.warn. */
  log?: (msg: string) => void;
  /** Receives the steps of building a new cache entry (they take seconds to minutes). Default: none. */
  info?: (msg: string) => void;
}

export interface PreparedDataset {
  tokenizer: Tokenizer;
  /** trainCount × seqLen ids. */
  train: Int32Array;
  trainCount: number;
  validation: Int32Array;
  validationCount: number;
  seqLen: number;
  cacheKey: string;
  /** True when everything was read from the cache. */
  fromCache: boolean;
}

export function datasetCacheKey(opts: Omit<PrepareDatasetOptions, 'cacheDir' | 'log' | 'info'>): string {
  const files = corpusFiles(opts.extraTextFiles ?? []).map((f) => [f.name, f.size]);
  const payload = JSON.stringify({
    format: DATA_FORMAT_VERSION,
    files,
    seed: opts.seed,
    classificationSeed: opts.classificationSeed ?? opts.seed,
    vocabSize: opts.vocabSize,
    seqLen: opts.seqLen,
    validationFraction: opts.validationFraction,
  });
  return createHash('sha256').update(payload).digest('hex').slice(0, 20);
}

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

interface PackedHeader {
  format: number;
  dtype: 'int32';
  endian: 'LE' | 'BE';
  seqLen: number;
  count: number;
  byteLength: number;
  sha256: string;
}

/**
 * Binary layout: 8-byte magic `TTCSEQ01`, uint32 LE header length H, H bytes of JSON
 * header (PackedHeader), zero padding to a multiple of 4, then count·seqLen int32s.
 */
export function encodePacked(data: Int32Array, count: number, seqLen: number): Buffer {
  const payload = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const header: PackedHeader = {
    format: DATA_FORMAT_VERSION,
    dtype: 'int32',
    endian: endianness(),
    seqLen,
    count,
    byteLength: payload.byteLength,
    sha256: sha256(payload),
  };
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const headEnd = 12 + h.length;
  const start = Math.ceil(headEnd / 4) * 4;
  const out = Buffer.alloc(start + payload.byteLength);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(h.length, 8);
  h.copy(out, 12);
  out.set(payload, start);
  return out;
}

/** Parses and verifies a packed file; throws an Error saying what is wrong. */
export function decodePacked(buf: Buffer, expectSeqLen?: number): { data: Int32Array; count: number; seqLen: number } {
  if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC)) throw new Error('bad magic');
  const hLen = buf.readUInt32LE(8);
  if (12 + hLen > buf.length) throw new Error('truncated header');
  let header: PackedHeader;
  try {
    header = JSON.parse(buf.subarray(12, 12 + hLen).toString('utf8')) as PackedHeader;
  } catch {
    throw new Error('unreadable header');
  }
  if (header.format !== DATA_FORMAT_VERSION || header.dtype !== 'int32') throw new Error('unsupported format');
  if (header.endian !== endianness()) throw new Error(`written on a ${header.endian} machine`);
  if (!Number.isInteger(header.seqLen) || !Number.isInteger(header.count) || header.byteLength !== header.seqLen * header.count * 4) {
    throw new Error('inconsistent header');
  }
  if (expectSeqLen !== undefined && header.seqLen !== expectSeqLen) throw new Error(`seqLen ${header.seqLen}, expected ${expectSeqLen}`);
  const start = Math.ceil((12 + hLen) / 4) * 4;
  if (buf.length !== start + header.byteLength) throw new Error(`size ${buf.length}, expected ${start + header.byteLength}`);
  const payload = buf.subarray(start);
  if (sha256(payload) !== header.sha256) throw new Error('checksum mismatch');
  // Copy into a fresh, aligned buffer.
  const data = new Int32Array(header.count * header.seqLen);
  new Uint8Array(data.buffer).set(payload);
  return { data, count: header.count, seqLen: header.seqLen };
}

export function encodeTokenizerFile(tok: Tokenizer): string {
  const body = tok.toJSON();
  return JSON.stringify({ format: DATA_FORMAT_VERSION, sha256: sha256(JSON.stringify(body)), tokenizer: body });
}

export function decodeTokenizerFile(text: string): Tokenizer {
  let o: { format?: unknown; sha256?: unknown; tokenizer?: unknown };
  try {
    o = JSON.parse(text);
  } catch {
    throw new Error('not JSON');
  }
  if (typeof o !== 'object' || o === null || o.format !== DATA_FORMAT_VERSION) throw new Error('unsupported format');
  if (sha256(JSON.stringify(o.tokenizer)) !== o.sha256) throw new Error('checksum mismatch');
  return Tokenizer.fromJSON(o.tokenizer);
}

type Loaded = Omit<PreparedDataset, 'cacheKey' | 'fromCache'>;

interface CacheRead {
  /** Everything, verified. */
  complete?: Loaded;
  /** A verified tokenizer from an entry whose other files are missing or corrupt. */
  tokenizer?: Tokenizer;
}

function readCache(dir: string, seqLen: number, log: (m: string) => void): CacheRead {
  const read = (name: string): Buffer | null => {
    try {
      return readFileSync(join(dir, name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      throw new DataError(`cannot read the dataset cache file ${join(dir, name)} (cacheDir): ${code ?? (e as Error).message}`);
    }
  };
  const tokBuf = read('tokenizer.json');
  const trainBuf = read('train.bin');
  const valBuf = read('validation.bin');
  if (!tokBuf && !trainBuf && !valBuf) return {};
  let tokenizer: Tokenizer | undefined;
  let current = 'tokenizer.json';
  try {
    if (!tokBuf) throw new Error('missing');
    tokenizer = decodeTokenizerFile(tokBuf.toString('utf8'));
    current = 'train.bin';
    if (!trainBuf) throw new Error('missing');
    const train = decodePacked(trainBuf, seqLen);
    current = 'validation.bin';
    if (!valBuf) throw new Error('missing');
    const validation = decodePacked(valBuf, seqLen);
    return {
      complete: { tokenizer, train: train.data, trainCount: train.count, validation: validation.data, validationCount: validation.count, seqLen },
    };
  } catch (e) {
    const msg = (e as Error).message;
    log(
      `dataset cache: ${join(dir, current)} is ${msg === 'missing' ? 'missing' : `corrupt (${msg})`}; rebuilding ${dir}` +
        (tokenizer ? ' (the verified tokenizer is kept)' : ''),
    );
    return { tokenizer };
  }
}

/** Builds (or loads from the cache) the tokenizer and the packed train/validation sequences. */
export async function prepareDataset(opts: PrepareDatasetOptions): Promise<PreparedDataset> {
  const { seed, seqLen, vocabSize, validationFraction } = opts;
  if (!Number.isInteger(seqLen) || seqLen < 3) throw new RangeError(`seqLen must be an integer >= 3, got ${seqLen}`);
  const log = opts.log ?? ((m: string) => console.warn(m));
  const cacheKey = datasetCacheKey(opts);
  const dir = join(opts.cacheDir, cacheKey);
  const cached = readCache(dir, seqLen, log);
  if (cached.complete) return { ...cached.complete, cacheKey, fromCache: true };

  const info = opts.info ?? (() => {});
  info(`dataset: building the cache entry ${dir} (corpus, tokenizer, packed sequences)`);
  const t0 = Date.now();
  const corpus = loadPretrainCorpus({
    seed,
    validationFraction,
    extraTextFiles: opts.extraTextFiles,
    classificationSeed: opts.classificationSeed,
  });
  const t1 = Date.now();
  // Paced (core/pace.ts): a Ctrl-C or SIGTERM is served during minutes of this, not after it.
  // The tokenizer depends on the same inputs as the key, so a verified cached one is reused.
  if (!cached.tokenizer) info(`dataset: training the tokenizer (vocab ${vocabSize}) on ${corpus.train.length} documents`);
  const tokenizer = cached.tokenizer ?? (await runPaced(Tokenizer.trainSteps(corpus.train, vocabSize)));
  const t2 = Date.now();
  info(`dataset: encoding and packing ${corpus.train.length + corpus.validation.length} documents`);
  const train = packSequences(await runPaced(encodeAll(tokenizer, corpus.train)), seqLen);
  const validation = packSequences(await runPaced(encodeAll(tokenizer, corpus.validation)), seqLen);
  const t3 = Date.now();

  makeCacheDir(dir);
  if (!cached.tokenizer) writeFileAtomic(join(dir, 'tokenizer.json'), encodeTokenizerFile(tokenizer));
  writeFileAtomic(join(dir, 'train.bin'), encodePacked(train.data, train.count, seqLen));
  writeFileAtomic(join(dir, 'validation.bin'), encodePacked(validation.data, validation.count, seqLen));
  writeFileAtomic(
    join(dir, 'info.json'),
    JSON.stringify(
      {
        format: DATA_FORMAT_VERSION,
        inputs: { seed, classificationSeed: opts.classificationSeed ?? seed, seqLen, vocabSize, validationFraction, extraTextFiles: opts.extraTextFiles ?? [] },
        stats: {
          trainDocuments: corpus.train.length,
          validationDocuments: corpus.validation.length,
          vocabSize: tokenizer.vocabSize,
          trainSequences: train.count,
          validationSequences: validation.count,
        },
        timingsMs: { corpus: t1 - t0, tokenizer: t2 - t1, encodeAndPack: t3 - t2 },
        createdAt: new Date().toISOString(),
      },
      null,
      2,
    ),
  );
  return {
    tokenizer,
    train: train.data,
    trainCount: train.count,
    validation: validation.data,
    validationCount: validation.count,
    seqLen,
    cacheKey,
    fromCache: false,
  };
}

/** The token ids of every text, as paceable work (core/pace.ts): it yields after each text. */
function* encodeAll(tokenizer: Tokenizer, texts: string[]): Generator<void, number[][], void> {
  const out: number[][] = [];
  for (const t of texts) {
    out.push(tokenizer.encode(t));
    yield;
  }
  return out;
}

/** How old a temporary file of the cache must be to be another writer's leftover (writers rename theirs within seconds). */
const STALE_TMP_MS = 10 * 60_000;

/**
 * Creates a cache entry's directory (a clear error when cacheDir is not a usable directory) and
 * removes temporary files left there by writers that were killed (core/fs.ts names them
 * `<file>.tmp-<pid>-<random>`; they are never read, only in the way).
 */
function makeCacheDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new DataError(`cannot create the dataset cache directory ${dir} (cacheDir): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  for (const name of readdirSync(dir)) {
    if (!isTempName(name)) continue;
    const file = join(dir, name);
    try {
      if (Date.now() - statSync(file).mtimeMs > STALE_TMP_MS) rmSync(file, { force: true });
    } catch {
      // gone meanwhile (its writer renamed it): nothing to clean
    }
  }
}

/**
 * Order in which an epoch visits the sequences: a permutation of [0, count) drawn from
 * (seed, epoch). Batches are consecutive slices of it, so a data position is (epoch, offset).
 */
export function sequenceOrder(count: number, epoch: number, seed: number): Uint32Array {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`epoch must be a non-negative integer, got ${epoch}`);
  const s = new Rng(seed).getState();
  s[1] = (s[1] ^ 0x6f726472) >>> 0; // 'ordr'
  s[0] = (s[0] ^ epoch) >>> 0;
  const rng = new Rng(s);
  for (let i = 0; i < 20; i++) rng.nextUint32();
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  rng.shuffle(order);
  return order;
}
