/**
 * The exported Hugging Face tokenizer (ml/export/hf-tokenizer.ts) gives exactly ttc's ids: loaded
 * from the written tokenizer.json + tokenizer_config.json by Hugging Face's own JavaScript
 * implementation of its `tokenizers` library (@huggingface/tokenizers, no network, no model), it
 * encodes hundreds of real sentences and awkward texts to ttc's ids, with and without the special
 * tokens ttc's model inputs carry, and decodes them back as ttc does.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { loadBrown } from '../ml/data/brown.ts';
import { buildClassificationSet } from '../ml/data/classification.ts';
import { CLS_ID, MASK_ID, NUM_SPECIAL, SEP_ID, SPECIAL_TOKENS, Tokenizer, UNK_ID, WORD_START_ID } from '../ml/data/tokenizer.ts';
import { huggingFaceTokenizer, TOKENIZER_FILES, writeHuggingFaceTokenizer } from '../ml/export/hf-tokenizer.ts';
import { datasetFor } from '../ml/train/data.ts';
import { tempDir, tinyConfig, TINY_MODEL } from './kit/helpers.ts';

/** Texts that exercise every step of ttc's normalization and pre-tokenization. */
const AWKWARD = [
  '',
  '   ',
  '\t\n ',
  'Hello,   World!!  3.14159 -- (e.g.) $1,000; 50% off? #tag @user a&b <x> {y} [z] |w| ~ ^ ` \\ /',
  "don't  stop\t\nbelieving... it's O'Neill's 'quoted' \"double\"",
  'naïve café résumé Ångström façade Øre señor Dvořák Łódź Ñandú',
  'Crème Brûlée À LA CARTE ÉCOLE',
  '“curly quotes” ‘single’ — em-dash – en-dash … ellipsis • bullet ° ± × ÷ § ¶ © ®',
  'ＡＢＣ ｆｕｌｌｗｉｄｔｈ ﬁne ﬂow ½ ¼ ² ³ ① ⑩ Ⅻ ℌ ㎏ ™',
  'ΟΔΟΣ ΣΟΦΟΣ. ΣΑΣ Ο\'Σ ΑΣ\' σοφός ς Σ',
  'İstanbul ǅemal ß ẞ ǈ ı',
  'emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷 keycap 1️⃣ ❤️',
  '東京 中文字符 日本語のテキスト 한국어 ภาษาไทย العربية עברית हिन्दी',
  'tabs\tand\nnewlines\r\n  runs   of\u00a0spaces\u2003em\u3000ideo\ufeffbom\u0085nel\u1680ogham\u2028ls\u2029ps\u000bvt\u000cff',
  '  leading and trailing   ',
  'x\u{1F600}y \u0000 nul \u2581 marker ▁▁ \u2581word ▁',
  'zero\u200bwidth\u200djoiner soft\u00adhyphen combining e\u0301 a\u0300\u0316 o\u0308',
  'a'.repeat(150) + ' ' + '7'.repeat(130) + 'x ' + 'é'.repeat(70),
  '3.14159 1,000,000 $5 50% 2nd 1990s 12:30pm +44-20-7946-0958 ٣٤٥ ๓',
  'mixedCASE camelCase snake_case kebab-case URL https://example.com/a?b=c&d=e mail@example.org',
  '!!!??? ... ,,, ;;; ::: ((( ))) --- ___ ***',
  '\ue000 private \u{10FFFD} use \u{1D400} math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
];

/** ≥ 300 real sentences: every 150th sentence of the Brown corpus and WordNet glosses (the classification task's inputs). */
function realSentences(): string[] {
  const brown = loadBrown().flatMap((d) => d.sentences).filter((_, i) => i % 150 === 0);
  const glosses = buildClassificationSet(1234).test.slice(0, 60).map((e) => e.text);
  return [...brown, ...glosses];
}

function hfOf(tok: Tokenizer): HfTokenizer {
  const dir = tempDir('hf-tokenizer');
  const written = writeHuggingFaceTokenizer(dir, tok, { modelMaxLength: TINY_MODEL.seqLen });
  if (written.map((f) => path.basename(f)).join() !== TOKENIZER_FILES.join()) throw new Error(`wrote ${written.join(', ')}`);
  const read = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  return new HfTokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
}

/** The texts whose ids differ, with both encodings (empty: the exported tokenizer is exact on them). */
function differences(tok: Tokenizer, hf: HfTokenizer, texts: string[]): string[] {
  const out: string[] = [];
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  for (const text of texts) {
    const ids = tok.encode(text);
    const plain = hf.encode(text, { add_special_tokens: false }).ids;
    const model = hf.encode(text).ids;
    if (!same(ids, plain)) out.push(`${JSON.stringify(text)}: ttc ${ids.join(' ')} / hf ${plain.join(' ')}`);
    // the classifier's input (ml/train/classifier.ts), untruncated; the MLM sequences are [CLS] … [SEP] too
    else if (!same([CLS_ID, ...ids, SEP_ID], model)) out.push(`${JSON.stringify(text)} with special tokens: hf ${model.join(' ')}`);
  }
  return out;
}

test('the exported tokenizer of a run gives exactly ttc\'s ids on real sentences and awkward text, with and without [CLS]/[SEP], and decodes as ttc does', async (t) => {
  // the run's tokenizer as training builds it (Brown + WordNet, vocab 1000): the export's
  const tok = (await datasetFor(tinyConfig(), () => {})).tokenizer;
  const hf = hfOf(tok);
  const sentences = realSentences();
  t.true(sentences.length >= 300, `${sentences.length} sentences`);
  const texts = [...sentences, ...AWKWARD];
  t.deepEqual(differences(tok, hf, texts), []);
  // the texts did reach the hard paths: unknown characters, literal markers, long runs, empty texts
  const all = texts.map((s) => tok.encode(s));
  t.true(all.filter((ids) => ids.includes(UNK_ID)).length >= 8, 'unknown characters');
  t.true(all.some((ids) => ids.length === 0), 'an empty text');
  t.true(all.filter((ids) => ids.length > 8 && !ids.includes(UNK_ID)).length >= 300, 'real sentences without [UNK]');
  // a pair is two documents of an MLM sequence: [CLS] a [SEP] b [SEP]
  for (let i = 0; i + 1 < 40; i += 2) {
    const [a, b] = [sentences[i]!, sentences[i + 1]!];
    t.deepEqual(hf.encode(a, { text_pair: b }).ids, [CLS_ID, ...tok.encode(a), SEP_ID, ...tok.encode(b), SEP_ID]);
  }
  // decoding: ttc's text back ([UNK] rendered alike), the special tokens skipped on request
  for (const [i, ids] of all.entries()) {
    if (ids.length === 0) continue;
    t.is(hf.decode(ids), tok.decode(ids), texts[i]);
    t.is(hf.decode([CLS_ID, ...ids, SEP_ID], { skip_special_tokens: true }), tok.decode(ids, { skipSpecial: true }), texts[i]);
  }
  // Hugging Face reads a special token's text as that token (its fill-mask pipeline's input): the ids ttc's masking gives
  t.deepEqual(hf.encode('The cat [MASK] on the mat.').ids, [CLS_ID, ...tok.encode('The cat'), MASK_ID, ...tok.encode('on the mat.'), SEP_ID]);
});

test('a tokenizer whose alphabet holds the accents, Greek, CJK and emoji is exact on them too (final sigma, marks, long runs)', (t) => {
  const brown = loadBrown().flatMap((d) => d.sentences);
  const tok = Tokenizer.train([...brown.slice(0, 4000), ...AWKWARD, ...AWKWARD], 700);
  const hf = hfOf(tok);
  const unknown = AWKWARD.filter((s) => tok.encode(s.replaceAll('\u2581', '')).includes(UNK_ID));
  t.deepEqual(unknown, [], 'the awkward texts are in the alphabet (but for the literal ▁)');
  t.true(tok.encode('σοφός ς').some((id) => tok.idToToken(id).includes('ς')), 'the final sigma is a symbol of its own');
  t.deepEqual(differences(tok, hf, [...AWKWARD, ...brown.filter((_, i) => i % 300 === 7)]), []);
});

test('the files: vocabulary and merges in ttc\'s order, the special tokens, the model\'s length; a wrong export is caught', async (t) => {
  const tok = (await datasetFor(tinyConfig(), () => {})).tokenizer;
  const files = huggingFaceTokenizer(tok, { modelMaxLength: 128 });
  const json = files['tokenizer.json'] as { model: { vocab: Record<string, number>; merges: string[] }; added_tokens: { id: number; content: string; special: boolean }[] };
  t.is(Object.keys(json.model.vocab).length, tok.vocabSize);
  for (let id = 0; id < tok.vocabSize; id++) t.is(json.model.vocab[tok.idToToken(id)], id);
  const j = tok.toJSON();
  t.is(json.model.merges.length, tok.vocabSize - j.firstMerge);
  t.is(json.model.merges[0], `${tok.idToToken(j.merges[0]!)} ${tok.idToToken(j.merges[1]!)}`);
  t.deepEqual(json.added_tokens.map((a) => [a.id, a.content, a.special]), SPECIAL_TOKENS.map((s, i) => [i, s, true]));
  t.like(files['tokenizer_config.json'], { tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: 128, clean_up_tokenization_spaces: false, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', mask_token: '[MASK]', unk_token: '[UNK]' });
  t.deepEqual(files['special_tokens_map.json'], { unk_token: '[UNK]', sep_token: '[SEP]', pad_token: '[PAD]', cls_token: '[CLS]', mask_token: '[MASK]' });
  t.deepEqual([...TOKENIZER_FILES], ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']);

  // the comparison fails a tokenizer that is off: merges in another order, a literal ▁ read as a word start
  const texts = [...realSentences().slice(0, 100), '\u2581x a\u2581b'];
  const swapped = structuredClone(json);
  swapped.model.merges.reverse();
  t.true(differences(tok, new HfTokenizer(swapped, files['tokenizer_config.json']), texts).length > 50);
  const noStandIn = structuredClone(json) as unknown as { normalizer: { normalizers: unknown[] } };
  noStandIn.normalizer.normalizers.pop();
  t.deepEqual(differences(tok, new HfTokenizer(noStandIn as object, files['tokenizer_config.json']), texts).map((d) => d.slice(0, 12)), ['"▁x a▁b": tt']);
  t.is(WORD_START_ID, NUM_SPECIAL);
});
