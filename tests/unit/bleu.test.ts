/**
 * Corpus BLEU (ml/tasks/bleu.ts) against values worked out by hand, each with its counts, precisions
 * and brevity penalty in the comment above it: sacreBLEU 2.x's defaults (13a, orders 1..4, 'exp'
 * smoothing, closest reference length). Every value here was also checked against sacreBLEU's own
 * code (github.com/mjpost/sacrebleu at f615c72, run with Python; see docs/translation.md), which
 * agreed to the last digit or two of a double.
 */
import test from 'ava';
import { closestRefLen, computeBleu, corpusBleu, sentenceBleu, tokenize13a } from '../../ml/tasks/bleu.ts';

const close = (a: number, b: number, eps = 1e-9) => Math.abs(a - b) <= eps;

test('a perfect match scores 100', (t) => {
  // 6 tokens: n-grams 6/6, 5/5, 4/4, 3/3 → every p_n = 100; c = r = 6 → BP = 1 → BLEU = 100.
  const s = corpusBleu(['the cat sat on the mat'], [['the cat sat on the mat']]);
  t.deepEqual(s.counts, [6, 5, 4, 3]);
  t.deepEqual(s.totals, [6, 5, 4, 3]);
  t.is(s.bp, 1);
  t.true(close(s.score, 100), String(s.score));
});

test('no 4-gram matches: exp smoothing, and a brevity penalty', (t) => {
  // hyp "the quick brown fox jumped" (c = 5), ref "the quick brown lazy fox jumped" (r = 6)
  // 1-grams: all 5 in the ref                                 → 5/5 → p1 = 100
  // 2-grams: the quick, quick brown, fox jumped (not brown fox) → 3/4 → p2 = 75
  // 3-grams: the quick brown (not quick brown fox, brown fox jumped) → 1/3 → p3 = 33.33
  // 4-grams: the quick brown fox, quick brown fox jumped: none → 0/2 → 'exp': first zero order,
  //          p4 = 100 / (2 · 2) = 25
  // geometric mean: (100 · 75 · 33.33 · 25)^(1/4) = 6,250,000^(1/4) = 50
  // BP = exp(1 − 6/5) = exp(−0.2) = 0.818731 → BLEU = 50 · 0.818731 = 40.93654
  const s = corpusBleu(['the quick brown fox jumped'], [['the quick brown lazy fox jumped']]);
  t.deepEqual(s.counts, [5, 3, 1, 0]);
  t.deepEqual(s.totals, [5, 4, 3, 2]);
  t.deepEqual([s.sysLen, s.refLen], [5, 6]);
  t.true(close(s.precisions[3]!, 25));
  t.true(close(s.bp, Math.exp(-0.2)));
  t.true(close(s.score, 50 * Math.exp(-0.2)), String(s.score));
  t.true(close(s.score, 40.93653765389909));
  // Without smoothing the zero precision counts as log = −9,999,999,999: BLEU 0.
  t.is(corpusBleu(['the quick brown fox jumped'], [['the quick brown lazy fox jumped']], { smoothMethod: 'none' }).score, 0);
});

test('exp smoothing halves again for each further zero order', (t) => {
  // hyp "the the the the" (c = 4), ref "the cat" (r = 2): "the" clipped to its count in the ref, 1
  // 1-grams 1/4 → p1 = 25; 2-grams "the the" ×3: 0/3 → p2 = 100/(2·3) = 16.67;
  // 3-grams 0/2 → p3 = 100/(4·2) = 12.5; 4-grams 0/1 → p4 = 100/(8·1) = 12.5
  // c > r → BP = 1; BLEU = (25 · 16.67 · 12.5 · 12.5)^(1/4) = 65,104.17^(1/4) = 15.97358
  const s = corpusBleu(['the the the the'], [['the cat']]);
  t.deepEqual(s.counts, [1, 0, 0, 0]);
  t.deepEqual(s.totals, [4, 3, 2, 1]);
  t.true(close(s.precisions[1]!, 100 / 6) && close(s.precisions[2]!, 12.5) && close(s.precisions[3]!, 12.5));
  t.is(s.bp, 1);
  t.true(close(s.score, (25 * (100 / 6) * 12.5 * 12.5) ** 0.25), String(s.score));
  t.true(close(s.score, 15.97357760615681));
});

test('a brevity-penalised hypothesis with every n-gram right', (t) => {
  // hyp "the cat sat on the" (c = 5) is a prefix of the ref (r = 6): 5/5, 4/4, 3/3, 2/2 → p_n = 100
  // BP = exp(1 − 6/5) = 0.818731 → BLEU = 81.87308
  const s = corpusBleu(['the cat sat on the'], [['the cat sat on the mat']]);
  t.deepEqual(s.counts, [5, 4, 3, 2]);
  t.true(close(s.score, 100 * Math.exp(-0.2)), String(s.score));
});

test('multiple references: n-grams match any reference, clipped to the largest count in one', (t) => {
  // hyp "the cat is on the mat" (6); ref1 "the cat sat on the mat" (6); ref2 "there is a cat on the mat" (7)
  // 1-grams: the ×2 (ref1 has 2), cat, is (ref2), on, mat                        → 6/6 → 100
  // 2-grams: the cat (ref1), on the, the mat; not cat is, is on                  → 3/5 → 60
  // 3-grams: on the mat; not the cat is, cat is on, is on the                    → 1/4 → 25
  // 4-grams: the cat is on, cat is on the, is on the mat: none                   → 0/3 → 100/(2·3) = 16.67
  // closest ref length to 6: 6 → BP = 1; BLEU = (100 · 60 · 25 · 16.67)^(1/4) = 2,500,000^(1/4) = 39.76354
  const two = corpusBleu(['the cat is on the mat'], [['the cat sat on the mat'], ['there is a cat on the mat']]);
  t.deepEqual(two.counts, [6, 3, 1, 0]);
  t.deepEqual(two.totals, [6, 5, 4, 3]);
  t.true(close(two.score, 2_500_000 ** 0.25), String(two.score));
  // ref1 alone: "is" does not match → 5/6 → (83.33 · 60 · 25 · 16.67)^(1/4) = 2,083,333^(1/4) = 37.99178
  const one = corpusBleu(['the cat is on the mat'], [['the cat sat on the mat']]);
  t.deepEqual(one.counts, [5, 3, 1, 0]);
  t.true(close(one.score, ((500 / 6) * 60 * 25 * (100 / 6)) ** 0.25), String(one.score));
  // A missing reference (null) is left out of its segment.
  t.true(close(corpusBleu(['the cat is on the mat'], [['the cat sat on the mat'], [null]]).score, one.score));
});

test("the closest reference length wins, and a tie takes the shorter one", (t) => {
  t.is(closestRefLen(5, [4, 6]), 4);
  t.is(closestRefLen(5, [6, 4]), 4);
  t.is(closestRefLen(5, [7, 6, 2]), 6);
  // hyp "a b c d e" (5), refs "a b c d" (4) and "a b c d e f" (6): all n-grams are in ref2 → p_n = 100;
  // r = 4 (the tie goes to the shorter) ≤ c → BP = 1 → BLEU = 100 (with r = 6 it would be 81.87)
  const s = corpusBleu(['a b c d e'], [['a b c d'], ['a b c d e f']]);
  t.deepEqual([s.sysLen, s.refLen, s.bp], [5, 4, 1]);
  t.true(close(s.score, 100));
});

test('corpus BLEU sums the statistics over segments before dividing', (t) => {
  // seg 1 perfect (6 tokens: 6/6 5/5 4/4 3/3, r = 6); seg 2 "a dog" vs "a dog barked loudly" (2/2 1/1, r = 4)
  // sums: counts = totals = [8, 6, 4, 3] → every p_n = 100; c = 8, r = 10 → BP = exp(1 − 10/8) = exp(−0.25)
  // → BLEU = 77.88008 (segment 2 alone has no 3-gram and would score 0)
  const s = corpusBleu(['the cat sat on the mat', 'a dog'], [['the cat sat on the mat', 'a dog barked loudly']]);
  t.deepEqual(s.counts, [8, 6, 4, 3]);
  t.deepEqual([s.sysLen, s.refLen], [8, 10]);
  t.true(close(s.score, 100 * Math.exp(-0.25)), String(s.score));
  t.is(corpusBleu(['a dog'], [['a dog barked loudly']]).score, 0);
});

test('degenerate corpora: fewer than 4 tokens, no match, empty hypotheses', (t) => {
  // "the cat" vs itself: totals [2, 1, 0, 0] → the loop stops at n = 3, p3 = p4 = 0 → BLEU 0 at corpus level …
  const short = corpusBleu(['the cat'], [['the cat']]);
  t.deepEqual(short.totals, [2, 1, 0, 0]);
  t.is(short.score, 0);
  // … and 100 as a sentence with the effective order (sacrebleu.sentence_bleu's default): orders 1..2 only.
  t.true(close(sentenceBleu('the cat', ['the cat']).score, 100));
  // No match at all → 0 (sacreBLEU's early stop), BP still reported: c = 6, r = 2
  const none = corpusBleu(['this is a test', 'another test'], [['ref1', 'ref2']]);
  t.deepEqual([none.score, none.sysLen, none.refLen], [0, 6, 2]);
  // Empty hypotheses: c = 0 → BP = 0, score 0 (and no division by zero).
  const empty = corpusBleu(['', '', ''], [['a b', 'c', 'd e f g']]);
  t.deepEqual([empty.score, empty.bp, empty.sysLen, empty.refLen], [0, 0, 0, 7]);
});

test("sacreBLEU's README example: 13a tokenization and two reference streams", (t) => {
  // sacreBLEU's own test (test/test_bleu.py test_corpus_bleu): 48.530827. Tokenized, "The dog bit the man ." etc.:
  // counts 14/17, 7/14, 5/11, 3/8; c = 17, r = 18 (closest per segment: 6 + 5 + 7)
  // BP = exp(1 − 18/17) = 0.942914; (82.35 · 50 · 45.45 · 37.5)^(1/4) = 51.4691 → 48.530827
  const refs = [
    ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
    ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
  ];
  const s = corpusBleu(['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'], refs);
  t.deepEqual(s.counts, [14, 7, 5, 3]);
  t.deepEqual(s.totals, [17, 14, 11, 8]);
  t.deepEqual([s.sysLen, s.refLen], [17, 18]);
  t.true(close(s.score, Math.exp(1 - 18 / 17) * ((100 * 14) / 17 * 50 * (500 / 11) * 37.5) ** 0.25));
  t.true(close(s.score, 48.530827, 1e-6), String(s.score));
});

test('case: mixed by default, lowercase on request', (t) => {
  // "The Cat sat" vs "the cat sat on": mixed case 1/3 match ("sat") …; lowercased: 3/3, 2/2, 1/1, total_4 = 0 → 0
  const mixed = corpusBleu(['The Cat sat'], [['the cat sat on']]);
  t.deepEqual(mixed.counts, [1, 0, 0, 0]);
  const lower = corpusBleu(['The Cat sat'], [['the cat sat on']], { lowercase: true });
  t.deepEqual(lower.counts, [3, 2, 1, 0]);
  t.deepEqual(lower.totals, [3, 2, 1, 0]);
});

test('13a: punctuation, numbers with commas and periods, dashes after digits', (t) => {
  t.is(tokenize13a('Hello, world!'), 'Hello , world !');
  // "$" is split off; the comma and period inside 1,000.50 stay (a digit on both sides); "today." splits
  t.is(tokenize13a('It costs $1,000.50 today.'), 'It costs $ 1,000.50 today .');
  t.is(tokenize13a('3.14, pi'), '3.14 , pi');
  t.is(tokenize13a('x,5 5,x .5 5. ,'), 'x , 5 5 , x . 5 5 . ,');
  t.is(tokenize13a('U.S.A.'), 'U . S . A .');
  t.is(tokenize13a('a..'), 'a . .');
  // a dash is split only after a digit
  t.is(tokenize13a('1990-2000 e-mail well-known'), '1990 - 2000 e-mail well-known');
  t.is(tokenize13a('-5.0-3'), '-5.0 - 3');
  t.is(tokenize13a('1.-2'), '1 . -2');
  // apostrophes are not split; every other ASCII symbol is
  t.is(tokenize13a("don't stop"), "don't stop");
  t.is(tokenize13a('{a}|b~c[d]e^f_g`h!i"j#k%l\'m(n)o*p+q:r;s<t=u>v?w@x/y\\z'), '{ a } | b ~ c [ d ] e ^ f _ g ` h ! i " j # k % l\'m ( n ) o * p + q : r ; s < t = u > v ? w @ x / y \\ z');
  // French text: « » and accented letters are left as they are
  t.is(tokenize13a('« zéro aye-di » (RTS) 0 A.D.'), '« zéro aye-di » ( RTS ) 0 A . D .');
});

test('13a: HTML entities, <skipped>, joined hyphenation and whitespace as Python splits it', (t) => {
  t.is(tokenize13a('A &amp; B &lt;tag&gt; &quot;q&quot;'), 'A & B < tag > " q "');
  // replaced in sacreBLEU's order (&quot; &amp; &lt; &gt;), one after the other: "&amp;lt;" → "&lt;" → "<"
  t.is(tokenize13a('&amp;lt;'), '<');
  t.is(tokenize13a('&apos;x&#39;'), '& apos ; x & # 39 ;');
  t.is(tokenize13a('x<skipped>y inter-\nnational\nline'), 'xy international line');
  // Python's str.split(): \x85 and \x1c are whitespace, U+FEFF is not (JS's \s says the opposite)
  t.is(tokenize13a('tabs\there  and\u00a0nbsp\u0085x\u001cy\ufeffz'), 'tabs here and nbsp x y\ufeffz');
  t.is(tokenize13a('😀.'), '😀 .');
  // corpusBleu rstrip()s a segment first: trailing spaces change nothing
  t.deepEqual(corpusBleu(['the cat sat on the mat   '], [['the cat sat on the mat\n']]).counts, [6, 5, 4, 3]);
});

test('computeBleu from statistics (sacreBLEU test_scoring) and the other smoothing methods', (t) => {
  // counts 9/10 7/8 5/6 3/4, c = r = 11 → (90 · 87.5 · 83.33 · 75)^(1/4) = 0.8375922397 × 100
  t.true(close(computeBleu([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score, 83.75922397, 1e-7));
  // floor (0.1): a zero order gets 100 · 0.1 / total; add-k (1) adds 1 to orders 2..4
  const floor = computeBleu([5, 3, 1, 0], [5, 4, 3, 2], 5, 6, { smoothMethod: 'floor' });
  t.true(close(floor.precisions[3]!, 5));
  const addk = computeBleu([5, 3, 1, 0], [5, 4, 3, 2], 5, 6, { smoothMethod: 'add-k' });
  t.deepEqual(addk.counts, [5, 4, 2, 1]);
  t.deepEqual(addk.totals, [5, 5, 4, 3]);
  t.true(close(addk.score, Math.exp(-0.2) * (100 * 80 * 50 * (100 / 3)) ** 0.25));
  // the inputs are not modified
  const counts = [5, 3, 1, 0];
  computeBleu(counts, [5, 4, 3, 2], 5, 6, { smoothMethod: 'add-k' });
  t.deepEqual(counts, [5, 3, 1, 0]);
  // sentence BLEU with the effective order: "a little test" vs "a test" (sacreBLEU test_effective_order, floor 0.01: p = 66.67, 0.5, 1 → (33.33)^(1/3) = 3.2183)
  t.true(close(sentenceBleu('a little test', ['a test'], { smoothMethod: 'floor', smoothValue: 0.01 }).score, 3.218297948685433, 1e-9));
});

test('mismatched stream lengths and bad options are refused', (t) => {
  t.throws(() => corpusBleu(['a', 'b'], [['a']]), { message: /reference stream 0 has 1 segments, the hypotheses 2/ });
  t.throws(() => corpusBleu(['a'], []), { message: /no reference stream/ });
  t.throws(() => corpusBleu(['a'], [['a']], { maxNgramOrder: 0 }), { message: /maxNgramOrder/ });
});
