/**
 * ttc's BPE tokenizer (ml/data/tokenizer.ts) in the Hugging Face `tokenizers` format:
 * `tokenizer.json` (what `PreTrainedTokenizerFast` / `AutoTokenizer` and tokenizers.js load),
 * `tokenizer_config.json` and `special_tokens_map.json`. The pipeline below gives exactly ttc's ids
 * (tests/tokenizer-export.test.ts checks it with Hugging Face's own JavaScript implementation):
 *
 * - normalizer: NFKC, Lowercase, NFKC (ttc's `normalizeText`), then every run of the characters
 *   JavaScript's `\s` matches → one space (an explicit class: the regex engines' `\s` differ), the
 *   single leading/trailing space removed (`^ | $`, not Strip, which strips other characters too),
 *   and a literal `▁` in the text → a private-use character outside the alphabet (ttc encodes a
 *   literal `▁` as [UNK]; left alone it would read as a word start). Before Lowercase, a capital
 *   sigma that ends a word becomes `ς`: JavaScript's toLowerCase does that (Unicode's Final_Sigma),
 *   the Rust library lowercases character by character.
 * - pre_tokenizer: Metaspace (spaces → `▁`, one `▁` prepended to the text: ttc's word-start
 *   marker), then Split on `▁?(?:[\p{L}\p{M}]{1,64}|\p{N}{1,64}|[^▁])` isolated: ttc's pre-tokens
 *   (letter/mark runs, digit runs, any other character alone; runs cut every MAX_WORD_CHARS code
 *   points), each carrying the marker when it starts a word.
 * - model: BPE over ttc's vocabulary (ids unchanged), its merges in ttc's order (rank = merge
 *   order, as ttc applies them), [UNK] for a character outside the alphabet, one per character.
 * - post_processor: `[CLS] $A [SEP]` (a pair: `[CLS] $A [SEP] $B [SEP]`), every token type 0: how
 *   ttc builds its classifier inputs and MLM sequences; the model has one token type.
 * - decoder: Metaspace (`▁` → space, the first one dropped): ttc's `decode`.
 * - added_tokens: [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0–4), special. Unlike ttc's `encode`, which
 *   reads "[MASK]" in a text as ordinary characters, Hugging Face matches these strings in the
 *   raw text as the special tokens (what its fill-mask pipeline relies on).
 */
import fs from 'node:fs';
import path from 'node:path';
import { MAX_WORD_CHARS, NUM_SPECIAL, SPECIAL_TOKENS, WORD_START, type Tokenizer } from '../data/tokenizer.ts';

/** A character-class body of what JavaScript's `\s` matches (ECMAScript WhiteSpace and LineTerminator): the whitespace of ttc's normalizeText. */
export const JS_WHITESPACE = '\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff';

/** The file names written next to config.json. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

export interface HuggingFaceTokenizerFiles {
  'tokenizer.json': Record<string, unknown>;
  'tokenizer_config.json': Record<string, unknown>;
  'special_tokens_map.json': Record<string, string>;
}

/** A cased character that is not case-ignorable (U+0345 is both): what Final_Sigma's context skips to. */
const CASED = '[\\p{Cased}&&\\P{Case_Ignorable}]';

const [PAD, UNK, CLS, SEP, MASK] = SPECIAL_TOKENS as [string, string, string, string, string];

/** A private-use code point outside the tokenizer's alphabet: what a literal `▁` in the text becomes (ttc encodes it as [UNK]). */
function markerStandIn(alphabet: Set<string>): string {
  for (let cp = 0xe000; cp <= 0xf8ff; cp++) {
    const ch = String.fromCodePoint(cp);
    if (!alphabet.has(ch)) return ch;
  }
  throw new Error('hf-tokenizer: every private-use character is in the alphabet: no stand-in for a literal ▁');
}

/** The three files of `tok` in the Hugging Face format; `modelMaxLength` is the model's sequence length. */
export function huggingFaceTokenizer(tok: Tokenizer, opts: { modelMaxLength: number }): HuggingFaceTokenizerFiles {
  const j = tok.toJSON();
  const vocab: Record<string, number> = {};
  j.vocab.forEach((t, id) => {
    if (Object.hasOwn(vocab, t)) throw new Error(`hf-tokenizer: token ${JSON.stringify(t)} has two ids (${vocab[t]} and ${id}): not expressible as a Hugging Face vocabulary`);
    vocab[t] = id;
  });
  const merges: string[] = [];
  for (let i = 0; i < j.merges.length; i += 2) {
    const a = j.vocab[j.merges[i]!]!;
    const b = j.vocab[j.merges[i + 1]!]!;
    // the format's "left right" string: no token holds a space (ttc's pre-tokens never do)
    if (a.includes(' ') || b.includes(' ')) throw new Error(`hf-tokenizer: merge ${JSON.stringify([a, b])} holds a space`);
    merges.push(`${a} ${b}`);
  }
  const alphabet = new Set(j.vocab.slice(NUM_SPECIAL + 1, j.firstMerge));
  const standIn = markerStandIn(alphabet);
  const special = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const regex = (Regex: string) => ({ Regex });
  const n = MAX_WORD_CHARS;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t, id) => special(t, id)),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFKC' },
        // Final_Sigma as JavaScript applies it: skipping case-ignorable characters, a cased one before Σ and none after
        { type: 'Replace', pattern: regex(`(?<=${CASED}\\p{Case_Ignorable}*)\u03a3(?!\\p{Case_Ignorable}*${CASED})`), content: '\u03c2' },
        { type: 'Lowercase' },
        { type: 'NFKC' },
        { type: 'Replace', pattern: regex(`[${JS_WHITESPACE}]+`), content: ' ' },
        { type: 'Replace', pattern: regex('^ | $'), content: '' },
        { type: 'Replace', pattern: { String: WORD_START }, content: standIn },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Metaspace', replacement: WORD_START, prepend_scheme: 'always', split: false },
        { type: 'Split', pattern: regex(`${WORD_START}?(?:[\\p{L}\\p{M}]{1,${n}}|\\p{N}{1,${n}}|[^${WORD_START}])`), behavior: 'Isolated', invert: false },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: CLS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: SEP, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: CLS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: SEP, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: SEP, type_id: 0 } },
      ],
      special_tokens: Object.fromEntries([CLS, SEP].map((t) => [t, { id: t, ids: [vocab[t]], tokens: [t] }])),
    },
    decoder: { type: 'Metaspace', replacement: WORD_START, prepend_scheme: 'always', split: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: UNK,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const specialTokens = { unk_token: UNK, sep_token: SEP, pad_token: PAD, cls_token: CLS, mask_token: MASK };
  const config = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    model_max_length: opts.modelMaxLength,
    clean_up_tokenization_spaces: false,
    padding_side: 'right',
    truncation_side: 'right',
    model_input_names: ['input_ids', 'token_type_ids', 'attention_mask'],
    ...specialTokens,
    added_tokens_decoder: Object.fromEntries(tokenizer.added_tokens.map(({ id, ...t }) => [String(id), t])),
  };
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': config, 'special_tokens_map.json': specialTokens };
}

/** Writes the three files into outDir; returns their paths. */
export function writeHuggingFaceTokenizer(outDir: string, tok: Tokenizer, opts: { modelMaxLength: number }): string[] {
  const files = huggingFaceTokenizer(tok, opts);
  fs.mkdirSync(outDir, { recursive: true });
  return TOKENIZER_FILES.map((name) => {
    const file = path.join(outDir, name);
    fs.writeFileSync(file, `${JSON.stringify(files[name], null, 2)}\n`);
    return file;
  });
}
