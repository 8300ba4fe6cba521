import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../core/rng.ts';
import { detokenize, lineWords, loadBrown, parseBrownFile } from '../ml/data/brown.ts';
import { buildClassificationSet, reservedSynsetIds } from '../ml/data/classification.ts';
import { brownDocuments, loadPretrainCorpus, splitDocuments, wordnetDocuments, wordnetDocumentText } from '../ml/data/corpus.ts';
import {
  datasetCacheKey,
  decodePacked,
  decodeTokenizerFile,
  encodePacked,
  encodeTokenizerFile,
  prepareDataset,
  sequenceOrder,
} from '../ml/data/dataset.ts';
import { maskBatch, numMaskedPerSeq } from '../ml/data/masking.ts';
import { packSequences } from '../ml/data/packing.ts';
import {
  CLS_ID,
  MASK_ID,
  NUM_SPECIAL,
  PAD_ID,
  SEP_ID,
  Tokenizer,
  UNK_ID,
  normalizeText,
} from '../ml/data/tokenizer.ts';
import { LEXNAMES, loadWordNet, splitGloss } from '../ml/data/wordnet.ts';

// ---------------------------------------------------------------- shared fixtures

let corpusMemo: { train: string[]; validation: string[] } | undefined;
const corpus = () => (corpusMemo ??= loadPretrainCorpus({ seed: 7, validationFraction: 0.02 }));

const cacheDir = join(tmpdir(), `ttc-data-test-${process.pid}`);
const datasetLogs: string[] = [];
const datasetOpts = {
  seed: 7,
  seqLen: 64,
  vocabSize: 1000,
  validationFraction: 0.02,
  cacheDir,
  log: (m: string) => datasetLogs.push(m),
};
let datasetMemo: ReturnType<typeof prepareDataset> | undefined;
/** First (uncached) build of the real dataset; its tokenizer (vocab 1000) is trained on corpus().train. */
const dataset = () => (datasetMemo ??= (rmSync(cacheDir, { recursive: true, force: true }), prepareDataset(datasetOpts)));
const realTokenizer = async () => (await dataset()).tokenizer;

// ---------------------------------------------------------------- WordNet

test('wordnet: synset counts per part of speech', (t) => {
  const counts: Record<string, number> = {};
  for (const s of loadWordNet()) counts[s.pos] = (counts[s.pos] ?? 0) + 1;
  t.deepEqual(counts, { n: 82192, v: 13789, a: 7468, s: 10717, r: 3625 });
  t.is(LEXNAMES.length, 45);
});

test('wordnet: known synsets parse (gloss, definition, examples, lexname, lemmas)', (t) => {
  const byId = new Map(loadWordNet().map((s) => [s.id, s]));
  const entity = byId.get('00001740-n')!;
  t.is(entity.lexName, 'noun.Tops');
  t.deepEqual(entity.lemmas, ['entity']);
  t.is(entity.definition, 'that which is perceived or known or inferred to have its own distinct existence (living or nonliving)');
  t.deepEqual(entity.examples, []);
  const dog = byId.get('02086723-n')!;
  t.is(dog.lexFile, 5);
  t.is(dog.lexName, 'noun.animal');
  t.deepEqual(dog.lemmas, ['dog', 'domestic dog', 'Canis familiaris']);
  t.is(
    dog.definition,
    'a member of the genus Canis (probably descended from the common wolf) that has been domesticated by man since prehistoric times; occurs in many breeds',
  );
  t.deepEqual(dog.examples, ['the dog barked all night']);
  const dip = byId.get('01580973-v')!;
  t.is(dip.lexName, 'verb.contact');
  t.is(dip.definition, 'immerse in a disinfectant solution');
  t.deepEqual(dip.examples, ['dip the sheep']);
  // Adjective markers such as (ip) are stripped from lemmas.
  t.deepEqual(byId.get('00014377-s')!.lemmas, ['abounding', 'galore']);
  t.deepEqual(splitGloss('a; b; "x; y"; "z" - Author'), { definition: 'a; b', examples: ['x; y', 'z'] });
});

// ---------------------------------------------------------------- classification set

test('classification: 10 classes, caps, 80/10/10 stratified split, deterministic', (t) => {
  const a = buildClassificationSet(11);
  t.is(a.labels.length, 10);
  t.deepEqual([...a.labels].sort(), a.labels);
  t.true(a.labels.every((l) => l.startsWith('noun.')));
  t.true(a.labels.includes('noun.artifact') && a.labels.includes('noun.person'));
  t.is(a.train.length, 16000);
  t.is(a.dev.length, 2000);
  t.is(a.test.length, 2000);
  for (const [name, xs, per] of [['train', a.train, 1600], ['dev', a.dev, 200], ['test', a.test, 200]] as const) {
    const c = new Array(10).fill(0);
    for (const e of xs) c[e.label]++;
    t.deepEqual(c, new Array(10).fill(per), `${name} is stratified`);
    t.true(xs.every((e) => e.text.length > 0 && !e.text.startsWith('"') && !/: "/.test(e.text)));
  }
  const ids = [...a.train, ...a.dev, ...a.test].map((e) => e.synset);
  t.is(new Set(ids).size, 20000, 'splits are disjoint');
  const b = buildClassificationSet(11);
  t.deepEqual(b, a, 'same seed, same set');
  const c = buildClassificationSet(12);
  t.deepEqual(c.labels, a.labels);
  t.notDeepEqual(c.train.slice(0, 50), a.train.slice(0, 50), 'another seed draws another set');
  const reserved = reservedSynsetIds(11);
  t.is(reserved.size, 20000);
  t.true(ids.every((id) => reserved.has(id)));
});

test('classification: reserved synsets are absent from the pretraining corpus', (t) => {
  const reserved = reservedSynsetIds(7);
  const docs = wordnetDocuments(7);
  t.true(docs.length > 90000);
  t.true(docs.every((d) => !reserved.has(d.id)));
  const texts = new Set([...corpus().train, ...corpus().validation]);
  const byId = new Map(loadWordNet().map((s) => [s.id, s]));
  for (const id of reserved) t.false(texts.has(wordnetDocumentText(byId.get(id)!)), id);
  // And the definitions themselves do not occur as any WordNet document's definition.
  const defs = new Set([...reserved].map((id) => byId.get(id)!.definition));
  t.true(docs.every((d) => !defs.has(byId.get(d.id)!.definition)));
});

// ---------------------------------------------------------------- corpus

test('brown: tags stripped, text detokenized', (t) => {
  t.deepEqual(lineWords('The/at Fulton/np-tl 1/2/cd //in **zg/nn and/or/cc'), ['The', 'Fulton', '1/2', '/', 'and/or']);
  t.is(detokenize(['He', 'said', ',', '``', 'no', "''", '(', 'really', ')', '.']), 'He said, "no" (really).');
  const ca01 = loadBrown().find((d) => d.id === 'ca01')!;
  t.is(
    ca01.sentences[0],
    'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.',
  );
  t.is(loadBrown().length, 500);
  t.deepEqual(parseBrownFile('\n\n\tA/at b/nn ./.\n'), ['A b.']);
});

test('corpus: Brown text without tags, deterministic document split', (t) => {
  const { train, validation } = corpus();
  const all = [...train, ...validation];
  t.true(all.some((x) => x.includes('The Fulton County Grand Jury said Friday')));
  const brown = brownDocuments();
  t.is(brown.length, 500);
  const tagRe = /[A-Za-z]\/(at|nn|nns|np|vb|vbd|jj|cc|cs)\b/;
  t.true(brown.every((d) => !tagRe.test(d.text) && !d.text.includes('``')));
  const words = all.reduce((n, x) => n + x.split(/\s+/).length, 0);
  t.true(words > 2_000_000 && words < 3_000_000, `words ${words}`);
  t.is(validation.length, Math.round(0.02 * all.length));
  const again = loadPretrainCorpus({ seed: 7, validationFraction: 0.02 });
  t.deepEqual(again.validation, validation);
  t.deepEqual(again.train.slice(0, 100), train.slice(0, 100));
  const range = Array.from({ length: 10000 }, (_, i) => i);
  t.deepEqual(splitDocuments(range, 7, 0.02), splitDocuments(range, 7, 0.02));
  t.notDeepEqual(splitDocuments(range, 8, 0.02).validation, splitDocuments(range, 7, 0.02).validation);
  const s = splitDocuments([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 1, 0.2);
  t.is(s.validation.length, 2);
  t.deepEqual([...s.train, ...s.validation].sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.throws(() => splitDocuments([1], 1, 1), { instanceOf: RangeError });
});

test('corpus: extra text files become paragraph documents', (t) => {
  const p = join(tmpdir(), `ttc-extra-${process.pid}.txt`);
  writeFileSync(p, 'First paragraph line one.\nline two.\n\n\nSecond paragraph.\n');
  try {
    const c = loadPretrainCorpus({ seed: 7, validationFraction: 0.02, extraTextFiles: [p] });
    const all = [...c.train, ...c.validation];
    t.true(all.includes('First paragraph line one.\nline two.'));
    t.true(all.includes('Second paragraph.'));
    t.is(all.length, corpus().train.length + corpus().validation.length + 2);
  } finally {
    rmSync(p, { force: true });
  }
});

// ---------------------------------------------------------------- tokenizer

test('tokenizer: specials and round trip on real sentences', async (t) => {
  const tok = await realTokenizer();
  t.is(tok.vocabSize, 1000);
  t.deepEqual([0, 1, 2, 3, 4].map((i) => tok.idToToken(i)), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  t.deepEqual([PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID, NUM_SPECIAL], [0, 1, 2, 3, 4, 5]);
  let checked = 0;
  for (const text of corpus().validation.slice(0, 300)) {
    const ids = tok.encode(text);
    if (ids.includes(UNK_ID)) continue;
    t.true(ids.every((id) => id >= NUM_SPECIAL && id < tok.vocabSize));
    t.is(tok.decode(ids), normalizeText(text));
    checked++;
  }
  t.true(checked > 290, `checked ${checked}`);
  const s = "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election.";
  t.is(tok.decode(tok.encode(s)), normalizeText(s));
  t.true(tok.encode(s).length < s.length / 2, 'subwords compress');
});

test('tokenizer: tricky text (punctuation, digits, unicode, empty)', (t) => {
  const tricky = [
    '',
    '   ',
    'Hello,   World!!  3.14159 -- (e.g.) $1,000; 50% off?',
    'naïve café — “quotes” and ünïcödé 東京 🙂!',
    'ＡＢＣ ﬁne ½',
    'x'.repeat(150) + ' tail',
    "don't  stop\t\nbelieving...",
  ];
  // Train on real text plus the unicode characters so that they are in the alphabet.
  const tok = Tokenizer.train([...corpus().train.slice(0, 3000), ...tricky, 'naïve café'], 600);
  for (const s of tricky) {
    const ids = tok.encode(s);
    t.false(ids.includes(UNK_ID), s);
    t.is(tok.decode(ids), normalizeText(s), s);
  }
  t.deepEqual(tok.encode(''), []);
  t.is(tok.decode([]), '');
  t.is(normalizeText('  ＡＢＣ\u00a0 ﬁ  X '), 'abc fi x');
  for (const s of tricky) t.is(normalizeText(normalizeText(s)), normalizeText(s), 'normalization is idempotent');
  // Specials are rendered, or skipped on request.
  const hello = tok.encode('hello world');
  t.is(tok.decode([CLS_ID, ...hello, SEP_ID]), '[CLS] hello world [SEP]');
  t.is(tok.decode([CLS_ID, ...hello, SEP_ID], { skipSpecial: true }), 'hello world');
  t.throws(() => tok.decode([tok.vocabSize]), { instanceOf: RangeError });
  t.throws(() => tok.decode([-1]), { instanceOf: RangeError });
});

test('tokenizer: unknown characters map to [UNK] without crashing', async (t) => {
  const tok = await realTokenizer();
  const ids = tok.encode('x\u{1F600}y \u0000 \u2581 ok');
  t.is(ids.filter((i) => i === UNK_ID).length, 3);
  t.is(tok.decode(ids), 'x[UNK]y [UNK] [UNK] ok');
  t.true(tok.encode('東京').every((i) => i === UNK_ID || i === 5));
});

test('tokenizer: deterministic training, JSON round trip, fromJSON rejects garbage', (t) => {
  const texts = corpus().train.slice(0, 2000);
  const a = Tokenizer.train(texts, 400);
  const b = Tokenizer.train(texts, 400);
  t.deepEqual(a.toJSON(), b.toJSON());
  const c = Tokenizer.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
  t.is(c.vocabSize, a.vocabSize);
  for (const s of texts.slice(0, 50)) t.deepEqual(c.encode(s), a.encode(s));
  const good = a.toJSON();
  const bad: unknown[] = [
    null,
    42,
    'tokenizer',
    [],
    {},
    { ...good, type: 'other' },
    { ...good, version: 99 },
    { ...good, vocab: 'abc' },
    { ...good, vocab: ['[UNK]', ...good.vocab.slice(1)] },
    { ...good, merges: good.merges.slice(2) },
    { ...good, merges: good.merges.map((x, i) => (i === 0 ? 10_000 : x)) },
    { ...good, vocab: good.vocab.map((v, i) => (i === good.vocab.length - 1 ? v + 'z' : v)) },
    { ...good, firstMerge: -3 },
  ];
  for (const g of bad) {
    const e = t.throws(() => Tokenizer.fromJSON(g));
    t.regex(e!.message, /^Tokenizer\.fromJSON: invalid tokenizer JSON: /);
  }
  t.throws(() => Tokenizer.train(texts, 10), { instanceOf: RangeError });
});

// ---------------------------------------------------------------- packing

test('packing: exact layout, documents separated by [SEP], tail dropped', (t) => {
  const p = packSequences([[10, 11, 12], [13], [], [14, 15, 16, 17, 18]], 6);
  t.is(p.count, 3);
  t.is(p.seqLen, 6);
  t.deepEqual(Array.from(p.data), [
    CLS_ID, 10, 11, 12, SEP_ID, SEP_ID,
    CLS_ID, 13, SEP_ID, 14, 15, SEP_ID,
    CLS_ID, 16, 17, 18, SEP_ID, SEP_ID,
  ]);
  // A boundary [SEP] at a chunk start is dropped; the ragged tail is dropped.
  const q = packSequences([[10, 11, 12, 13], [20]], 6);
  t.is(q.count, 1);
  t.deepEqual(Array.from(q.data), [CLS_ID, 10, 11, 12, 13, SEP_ID]);
  t.is(packSequences([], 8).count, 0);
  t.throws(() => packSequences([[1]], 2), { instanceOf: RangeError });
});

// ---------------------------------------------------------------- masking

function syntheticBatch(rng: Rng, batch: number, T: number, vocab: number): Int32Array {
  const s = new Int32Array(batch * T);
  for (let b = 0; b < batch; b++) {
    s[b * T] = CLS_ID;
    for (let i = 1; i < T - 1; i++) s[b * T + i] = rng.next() < 0.05 ? SEP_ID : NUM_SPECIAL + rng.int(vocab - NUM_SPECIAL);
    s[b * T + T - 1] = SEP_ID;
    if (b % 4 === 3) s[b * T + T - 2] = PAD_ID;
  }
  return s;
}

test('masking: fixed count, never special, sorted, labels, 80/10/10', (t) => {
  t.is(numMaskedPerSeq(64), 9);
  t.is(numMaskedPerSeq(128), 19);
  t.is(numMaskedPerSeq(3), 1);
  const B = 16;
  const T = 42; // 0.15 · 40 = 6 exactly
  const V = 1000;
  const k = numMaskedPerSeq(T);
  t.is(k, 6);
  const data = new Rng(1);
  const rng = new Rng(2);
  let nMask = 0;
  let nRandom = 0;
  let nSame = 0;
  let total = 0;
  for (let it = 0; it < 400; it++) {
    const seqs = syntheticBatch(data, B, T, V);
    const { inputIds, maskedPositions, maskedLabels } = maskBatch(seqs, B, T, V, rng);
    t.is(maskedPositions.length, B * k);
    t.is(maskedLabels.length, B * k);
    t.is(maskedPositions.length / (B * (T - 2)), 0.15, 'masked rate is exactly 15%');
    const isMasked = new Uint8Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < k; i++) {
        const pos = maskedPositions[b * k + i];
        if (pos < b * T || pos >= (b + 1) * T) t.fail('position outside its row');
        if (i > 0 && pos <= maskedPositions[b * k + i - 1]) t.fail('positions not strictly ascending');
        const orig = seqs[pos];
        if (orig === PAD_ID || orig === CLS_ID || orig === SEP_ID) t.fail('special token masked');
        if (maskedLabels[b * k + i] !== orig) t.fail('label differs from original id');
        isMasked[pos] = 1;
        const now = inputIds[pos];
        if (now === MASK_ID) nMask++;
        else if (now === orig) nSame++;
        else {
          if (now < NUM_SPECIAL || now >= V) t.fail('random id out of range');
          nRandom++;
        }
        total++;
      }
    }
    for (let i = 0; i < B * T; i++) if (!isMasked[i] && inputIds[i] !== seqs[i]) t.fail('unmasked position changed');
  }
  const pct = (x: number) => (100 * x) / total;
  t.true(Math.abs(pct(nMask) - 80) < 2, `mask ${pct(nMask)}`);
  t.true(Math.abs(pct(nRandom) - 10) < 2, `random ${pct(nRandom)}`);
  t.true(Math.abs(pct(nSame) - 10) < 2, `same ${pct(nSame)}`);
});

test('masking: deterministic given the RNG state; clear error when too few positions', (t) => {
  const seqs = syntheticBatch(new Rng(5), 8, 64, 500);
  const r1 = new Rng(9);
  r1.next();
  const state = r1.getState();
  const a = maskBatch(seqs, 8, 64, 500, r1);
  const b = maskBatch(seqs, 8, 64, 500, new Rng(state));
  t.deepEqual(a, b);
  const c = maskBatch(seqs, 8, 64, 500, new Rng(10));
  t.notDeepEqual(a.maskedPositions, c.maskedPositions);
  const bad = new Int32Array(16).fill(SEP_ID);
  bad[0] = CLS_ID;
  bad[1] = 7;
  t.throws(() => maskBatch(bad, 1, 16, 500, new Rng(1)), { message: /has only 1 maskable positions, needs 2/ });
  t.throws(() => maskBatch(seqs, 9, 64, 500, new Rng(1)), { instanceOf: RangeError });
});

// ---------------------------------------------------------------- dataset

test('dataset: cache files verify and reject corruption', (t) => {
  const data = Int32Array.from({ length: 24 }, (_, i) => i * 7);
  const buf = encodePacked(data, 3, 8);
  t.deepEqual(decodePacked(buf, 8), { data, count: 3, seqLen: 8 });
  const flipped = Buffer.from(buf);
  flipped[flipped.length - 3] ^= 0x40;
  t.throws(() => decodePacked(flipped), { message: /checksum/ });
  t.throws(() => decodePacked(buf.subarray(0, buf.length - 4)), { message: /size/ });
  t.throws(() => decodePacked(Buffer.from('garbage garbage')), { message: /magic/ });
  t.throws(() => decodePacked(buf, 16), { message: /seqLen/ });
  const tok = Tokenizer.train(['a tiny corpus', 'another tiny text'], 120);
  t.deepEqual(decodeTokenizerFile(encodeTokenizerFile(tok)).toJSON(), tok.toJSON());
  const tampered = encodeTokenizerFile(tok).replace('\u2581tiny', '\u2581tinx');
  t.not(tampered, encodeTokenizerFile(tok));
  t.throws(() => decodeTokenizerFile(tampered));
  t.throws(() => decodeTokenizerFile('{"format":1'), { message: /not JSON/ });
});

test('dataset: builds, caches, detects a corrupt cache file and rebuilds', async (t) => {
  const logs = datasetLogs;
  const opts = datasetOpts;
  try {
    const a = await dataset();
    t.false(a.fromCache);
    t.is(a.seqLen, 64);
    t.is(a.tokenizer.vocabSize, 1000);
    t.is(a.train.length, a.trainCount * 64);
    t.is(a.validation.length, a.validationCount * 64);
    t.true(a.trainCount > 50_000, `train ${a.trainCount}`);
    t.true(a.validationCount >= 300, `validation ${a.validationCount}`);
    for (const [arr, n] of [[a.train, a.trainCount], [a.validation, a.validationCount]] as const) {
      for (let r = 0; r < n; r++) {
        if (arr[r * 64] !== CLS_ID || arr[r * 64 + 63] !== SEP_ID) t.fail(`row ${r} layout`);
        if (arr[r * 64 + 1] === SEP_ID) t.fail(`row ${r} starts with [SEP]`);
      }
      for (let i = 0; i < arr.length; i++) if (arr[i] < 0 || arr[i] >= 1000 || arr[i] === PAD_ID || arr[i] === MASK_ID) t.fail('bad id');
    }
    // Every packed sequence can be masked.
    maskBatch(a.train.subarray(0, 256 * 64), 256, 64, 1000, new Rng(1));

    const b = await prepareDataset(opts);
    t.true(b.fromCache);
    t.is(b.cacheKey, a.cacheKey);
    t.deepEqual(b.train, a.train);
    t.deepEqual(b.validation, a.validation);
    t.deepEqual(b.tokenizer.toJSON(), a.tokenizer.toJSON());
    t.deepEqual(logs, []);

    t.not(datasetCacheKey({ ...opts, seqLen: 128 }), a.cacheKey);
    t.not(datasetCacheKey({ ...opts, seed: 4 }), a.cacheKey);
    t.is(datasetCacheKey(opts), a.cacheKey);

    const trainFile = join(cacheDir, a.cacheKey, 'train.bin');
    const bytes = readFileSync(trainFile);
    bytes[bytes.length - 100] ^= 0xff;
    writeFileSync(trainFile, bytes);
    const c = await prepareDataset(opts);
    t.false(c.fromCache, 'corrupt cache is not used');
    t.is(logs.length, 1);
    t.regex(logs[0], /train\.bin is corrupt \(checksum mismatch\)/);
    t.deepEqual(c.train, a.train);
    const d = await prepareDataset(opts);
    t.true(d.fromCache, 'rebuilt entry is a cache hit again');
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('dataset: sequenceOrder is a per-epoch permutation', (t) => {
  const a = sequenceOrder(1000, 0, 5);
  t.deepEqual(Array.from(a).sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  t.deepEqual(sequenceOrder(1000, 0, 5), a);
  t.notDeepEqual(sequenceOrder(1000, 1, 5), a);
  t.notDeepEqual(sequenceOrder(1000, 0, 6), a);
  t.is(sequenceOrder(0, 3, 5).length, 0);
  t.throws(() => sequenceOrder(10, -1, 5), { instanceOf: RangeError });
});
