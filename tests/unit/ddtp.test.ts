/**
 * The translation data (ml/data/ddtp.ts, pairs.ts, ddtp-fetch.ts) on a real excerpt of Debian's
 * bookworm/main Translation-en and Translation-fr (tests/fixtures/ddtp/, made by make.ts there from
 * a real `ttc data ddtp` download): parsing, the join on Description-md5, paragraph / item /
 * sentence alignment, the filters, the TSV format and its errors, the hash split, and the cache's
 * verification with real files (the download itself: tests/translation-data.test.ts, through apt).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { alignDdtp, DEFAULT_ALIGN_RULES, paragraphUnits, parseTranslationFile, splitOf, splitPairs, splitSentences } from '../../ml/data/ddtp.ts';
import { buildDdtpCache, checkMirror, checkPairsCache, loadSplit, prepareDdtp, preparePairsTsv, systemDebianMirror } from '../../ml/data/ddtp-fetch.ts';
import { formatPairsTsv, parsePairsTsv, readPairsTsv } from '../../ml/data/pairs.ts';
import { tempDir } from '../kit/helpers.ts';

const FIX = 'tests/fixtures/ddtp';
const enText = fs.readFileSync(path.join(FIX, 'Translation-en'), 'utf8');
const frText = fs.readFileSync(path.join(FIX, 'Translation-fr'), 'utf8');
const en = parseTranslationFile(enText, 'en');
const fr = parseTranslationFile(frText, 'fr');

test('parses the real Translation-en / -fr excerpt: stanzas, synopsis, paragraphs', (t) => {
  t.is(en.length, 145);
  t.is(fr.length, 123);
  t.is(new Set(en.map((e) => e.md5)).size, 135, 'some descriptions are shared by several packages');
  const ad = fr[0]!;
  t.deepEqual([ad.package, ad.md5, ad.short], ['0ad', 'd943033bedada21853d2ae54a2578a7b', 'jeu de stratégie en temps réel de guerres anciennes']);
  t.is(ad.paragraphs.length, 1);
  // (French typography: no-break spaces inside « », kept as they are until squash() makes every space ' ')
  t.is(ad.paragraphs[0]![0], '0 A.D (prononcez «\u00a0zéro aye-di\u00a0») est un jeu de stratégie en temps réel');
  // 0xffff: three paragraphs separated by " ." lines; list items keep their indentation
  const ff = fr.find((e) => e.package === '0xffff')!;
  t.is(ff.paragraphs.length, 3);
  t.is(ff.paragraphs[1]![1], ' –\u00a0création et décompression d\'images FIASCO sur périphérique local\u00a0;');
  // 389-ds-base-dev's translation writes its paragraph break as " \u00a0": read as one
  t.is(fr.find((e) => e.package === '389-ds-base-dev')!.paragraphs.length, 2);
});

test('joins on Description-md5 and aligns: the counts of every stage on the excerpt', (t) => {
  const { pairs, stats } = alignDdtp(en, fr);
  t.deepEqual(stats, {
    enEntries: 145, frEntries: 123,
    joined: 120, // 3 French stanzas translate an English description that is no longer in the index
    paragraphsAligned: 118, paragraphsMismatched: 2, // ampliconnoise (3 vs 2), aplus-fsf-dev (2 vs 1)
    candidates: 703, sentencePairs: 677, wholePairs: 26,
    droppedLength: 2, droppedRatio: 24, droppedUntranslated: 3, droppedDuplicate: 1,
    pairs: 673,
  });
  // the committed TSV is exactly what the pipeline makes of the excerpt
  t.deepEqual(pairs, readPairsTsv(path.join(FIX, 'pairs.tsv')));
  const has = (e: string, f: string) => pairs.some((p) => p.en === e && p.fr === f);
  // the synopses
  t.true(has('Real-time strategy game of ancient warfare', 'jeu de stratégie en temps réel de guerres anciennes'));
  // a sentence pair ("A.D." does not end a sentence before a lower-case word: one sentence each side)
  t.true(has('0 A.D. (pronounced "zero ey-dee") is a free, open-source, cross-platform real-time strategy (RTS) game of ancient warfare.', '0 A.D (prononcez « zéro aye-di ») est un jeu de stratégie en temps réel (RTS) libre et multiplate-forme de guerres anciennes.'));
  // list items aligned one by one, bullets ("*" and "–") dropped, continuation lines joined
  t.true(has('editing Maemo firmware packages', 'édition de paquets de micro-logiciel Maemo ;'));
  t.true(has('"cold" flashing for devices with bricked bootloaders', 'flashage « à froid » de périphériques avec chargeurs de démarrage bloqués ;'));
  // one English sentence, two French ones: the paragraph is kept whole
  t.true(has(
    'This package contains development headers for the core libraries of the 389 Directory Server, useful for developing plugins without having to install the server itself.',
    'Ce paquet fournit les en-têtes de développement pour les bibliothèques principales de 389 Directory Server. Elles sont utiles pour développer des modules sans devoir installer le serveur.',
  ));
  // nothing untranslated, nothing twice, every pair within the rules
  t.false(pairs.some((p) => p.en === p.fr));
  t.is(new Set(pairs.map((p) => `${p.en}\t${p.fr}`)).size, pairs.length);
  for (const p of pairs) {
    const [a, b] = [p.en.split(' ').length, p.fr.split(' ').length];
    t.true(a >= 1 && b >= 1 && a <= 100 && b <= 100 && Math.max(a, b) <= 2 * Math.min(a, b), `${a}/${b}: ${p.en}`);
  }
  // stricter rules drop more
  t.true(alignDdtp(en, fr, { ...DEFAULT_ALIGN_RULES, maxRatio: 1.5 }).pairs.length < pairs.length);
});

test('paragraph units and sentence splitting', (t) => {
  t.deepEqual(paragraphUnits(['Features:', ' * one', '   continued', ' - two', ' o three', '  – four ;']), ['Features:', 'one continued', 'two', 'three', 'four ;']);
  t.deepEqual(splitSentences('It works. It is fast! Really? Yes.'), ['It works.', 'It is fast!', 'Really?', 'Yes.']);
  // abbreviations, initials and lower-case continuations do not end a sentence
  t.deepEqual(splitSentences('Use tools, e.g. Foo and Bar. Written by J. Smith in the U.S. Army. See also cf. Baz.'), ['Use tools, e.g. Foo and Bar.', 'Written by J. Smith in the U.S. Army.', 'See also cf. Baz.']);
  t.deepEqual(splitSentences('Version 2.0 is out. 3 bugs are fixed.'), ['Version 2.0 is out.', '3 bugs are fixed.']);
  t.deepEqual(splitSentences('He said "hello." Then he left (for good.) Bye.'), ['He said "hello."', 'Then he left (for good.)', 'Bye.']);
  t.deepEqual(splitSentences('Le fichier (voir p. ex. README.Debian) est installé. M. Dupont le lit.'), ['Le fichier (voir p. ex. README.Debian) est installé.', 'M. Dupont le lit.']);
});

test('malformed Translation files are refused in one line with the file and the line', (t) => {
  t.throws(() => parseTranslationFile(' orphan continuation\n', 'fr', 'x/Translation-fr'), { message: 'x/Translation-fr:1: a continuation line outside a field' });
  t.throws(() => parseTranslationFile('Package: a\nDescription-md5: 123\nDescription-fr: x\n', 'fr', 'T'), { message: 'T:1: Description-md5 is not 32 hex digits: "123"' });
  t.throws(() => parseTranslationFile(`Package: a\nDescription-md5: ${'a'.repeat(32)}\nno colon here\n`, 'fr', 'T'), { message: 'T:3: expected "Field: value", got "no colon here"' });
  // a stanza without the language's description is skipped, CRLF line ends are read
  t.deepEqual(parseTranslationFile(`Package: a\r\nDescription-md5: ${'b'.repeat(32)}\r\nDescription-en: hello\r\n .\r\n world\r\n\r\nPackage: b\nDescription-md5: ${'c'.repeat(32)}\n`, 'en'), [
    { package: 'a', md5: 'b'.repeat(32), short: 'hello', paragraphs: [['world']] },
  ]);
});

test('TSV of pairs: round trip, and each malformed line named by its number', (t) => {
  const pairs = [{ en: 'Hello world', fr: 'Bonjour le monde' }, { en: 'a « b »', fr: 'ç' }];
  t.deepEqual(parsePairsTsv(formatPairsTsv(pairs)), pairs);
  // a BOM, CRLF and blank lines are tolerated
  t.deepEqual(parsePairsTsv('\ufeffHello world\tBonjour le monde\r\n\r\na « b »\tç\n'), pairs);
  t.throws(() => parsePairsTsv('a\tb\nno tab here\n', 'p.tsv'), { message: 'p.tsv:2: expected "source<TAB>target", found no tab' });
  t.throws(() => parsePairsTsv('a\tb\tc\n', 'p.tsv'), { message: 'p.tsv:1: expected "source<TAB>target", found 2 tabs' });
  t.throws(() => parsePairsTsv('a\tb\n\n\t b\n', 'p.tsv'), { message: 'p.tsv:3: the source (first) side is empty' });
  t.throws(() => parsePairsTsv('a\t \n', 'p.tsv'), { message: 'p.tsv:1: the target (second) side is empty' });
  t.throws(() => formatPairsTsv([{ en: 'a\tb', fr: 'c' }]), { message: 'pair 1: its en side holds a tab or a line break, which TSV cannot carry' });
  const dir = tempDir('pairs');
  const bad = path.join(dir, 'latin1.tsv');
  fs.writeFileSync(bad, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x09, 0x78, 0x0a]));
  t.throws(() => readPairsTsv(bad), { message: `${bad}: not valid UTF-8` });
  t.throws(() => readPairsTsv(path.join(dir, 'missing.tsv')), { message: /^cannot read the pairs file .*missing\.tsv: ENOENT$/ });
});

const DEV_FIRST = ['Supports 6502, 65C02, R65C02, W65C02, 65CE02, 65816, DTV, 65EL02, 4510', 'This package contains preprocessor configured for ppc64el architecture.'];

test('the split is a function of the English side alone: deterministic, order-free, stable', (t) => {
  const pairs = readPairsTsv(path.join(FIX, 'pairs.tsv'));
  const a = splitPairs(pairs);
  t.deepEqual([a.train.length, a.dev.length, a.test.length], [649, 10, 14]);
  const b = splitPairs([...pairs].reverse());
  for (const s of ['train', 'dev', 'test'] as const) t.deepEqual(b[s].map((p) => p.en).sort(), a[s].map((p) => p.en).sort(), s);
  // the same English sentence always lands in the same split, whatever its translation
  t.is(splitOf('editing Maemo firmware packages'), splitOf('editing Maemo firmware packages'));
  t.true(a.test.every((p) => splitOf(p.en) === 'test'));
  // fixed values (a change of the hash rule must be deliberate: it reshuffles every split)
  t.deepEqual(a.dev.slice(0, 2).map((p) => p.en), DEV_FIRST);
  t.is(splitOf('Real-time strategy game of ancient warfare'), 'train');
  t.throws(() => splitPairs(pairs, { dev: 0.6, test: 0.5 }), { message: /dev \+ test < 1/ });
});

const source = { kind: 'ddtp' as const, mirror: 'http://deb.debian.org/debian', suite: 'bookworm', component: 'main', fetchedAt: '2026-01-01T00:00:00.000Z', fetchSeconds: 1 };
const raw = () => ({ en: fs.readFileSync(path.join(FIX, 'Translation-en')), fr: fs.readFileSync(path.join(FIX, 'Translation-fr')) });

test('a cache is reused when every file verifies, rebuilt from verified raw files, refused offline otherwise', (t) => {
  const dir = path.join(tempDir('ddtp-cache'), 'ddtp');
  const m = buildDdtpCache(dir, raw(), source);
  t.deepEqual(m.counts, { train: 649, dev: 10, test: 14, total: 673 });
  t.deepEqual(Object.keys(m.files).sort(), ['dev.tsv', 'raw/Translation-en', 'raw/Translation-fr', 'test.tsv', 'train.tsv']);
  t.deepEqual(loadSplit(dir, 'dev').length, 10);
  const logs: string[] = [];
  const log = (s: string) => logs.push(s);
  const offline = { dir, offline: true, log };
  t.is(prepareDdtp(offline).from, 'cache');
  t.deepEqual(logs, []);

  // a split that does not match its checksum: rebuilt from the raw files, which verify (no download)
  fs.appendFileSync(path.join(dir, 'dev.tsv'), 'extra\tligne\n');
  t.regex(checkPairsCache(dir).ok ? '' : (checkPairsCache(dir) as { problem: string }).problem, /^dev\.tsv has sha256 [0-9a-f]{12}…, the manifest [0-9a-f]{12}…$/);
  t.throws(() => loadSplit(dir, 'dev'), { message: /^data cache .*: dev\.tsv has sha256 .* \(run ttc data to rebuild it\)$/ });
  t.is(prepareDdtp(offline).from, 'raw');
  t.regex(logs.pop()!, /: dev\.tsv has sha256 .*; rebuilding the pairs from its verified raw files$/);
  t.is(prepareDdtp(offline).from, 'cache');

  // other rules: rebuilt from the raw files too
  const stricter = prepareDdtp({ ...offline, rules: { ...DEFAULT_ALIGN_RULES, maxRatio: 1.5 } });
  t.is(stricter.from, 'raw');
  t.true(stricter.manifest.counts.total < 673);

  // a killed writer's old temporary is removed by the next build; a fresh one (a writer at work) is not
  const old = path.join(dir, 'raw', 'Translation-en.tmp-999999-deadbeef');
  const fresh = path.join(dir, 'train.tsv.tmp-999999-cafef00d');
  fs.writeFileSync(old, 'partial');
  fs.writeFileSync(fresh, 'partial');
  fs.utimesSync(old, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
  t.is(prepareDdtp({ ...offline, rules: { ...DEFAULT_ALIGN_RULES, maxRatio: 1.75 } }).from, 'raw');
  t.false(fs.existsSync(old));
  t.true(fs.existsSync(fresh));
  fs.rmSync(fresh);

  // a raw file that does not verify: offline, a one-line refusal (a download would fetch it again)
  fs.appendFileSync(path.join(dir, 'raw/Translation-fr'), '\n');
  t.throws(() => prepareDdtp(offline), { message: /^data cache .*ddtp: raw\/Translation-fr has sha256 [0-9a-f]{12}…, the manifest [0-9a-f]{12}…, and --offline forbids downloading it again$/ });
  fs.rmSync(path.join(dir, 'raw/Translation-en'));
  t.throws(() => prepareDdtp(offline), { message: /raw\/Translation-en is missing \(and 1 more\), and --offline/ });
});

test('a corrupt or foreign manifest is refused offline in one line', (t) => {
  const dir = path.join(tempDir('ddtp-manifest'), 'ddtp');
  buildDdtpCache(dir, raw(), source);
  const mf = path.join(dir, 'manifest.json');
  const good = fs.readFileSync(mf, 'utf8');
  const offline = { dir, offline: true, log: () => {} };
  fs.writeFileSync(mf, good.slice(0, 100));
  t.throws(() => prepareDdtp(offline), { message: `data cache ${dir}: ${mf} is not JSON, and --offline forbids downloading it again` });
  fs.writeFileSync(mf, JSON.stringify({ ...JSON.parse(good), version: 99 }));
  t.throws(() => prepareDdtp(offline), { message: `data cache ${dir}: ${mf} is not a ttc-pairs-cache v1 manifest, and --offline forbids downloading it again` });
  const m = JSON.parse(good);
  m.files['../../etc/passwd'] = { sha256: '0'.repeat(64), bytes: 1 };
  fs.writeFileSync(mf, JSON.stringify(m));
  t.throws(() => prepareDdtp(offline), { message: /names a file outside the cache: \.\.\/\.\.\/etc\/passwd/ });
  fs.rmSync(mf);
  t.throws(() => prepareDdtp(offline), { message: `data cache ${dir}: no manifest.json, and --offline forbids downloading it again` });
  // a TSV cache is not taken for DDTP's
  const tsvDir = path.join(tempDir('ddtp-tsv'), 'pairs');
  preparePairsTsv(path.join(FIX, 'pairs.tsv'), tsvDir);
  t.throws(() => prepareDdtp({ ...offline, dir: tsvDir }), { message: /holds pairs from .*pairs\.tsv, not DDTP: choose another --out$/ });
});

test("a user's TSV: deduplicated, split by the same rule, checksummed", (t) => {
  const dir = tempDir('pairs-tsv');
  const file = path.join(dir, 'mine.tsv');
  fs.writeFileSync(file, `${fs.readFileSync(path.join(FIX, 'pairs.tsv'), 'utf8')}Real-time strategy game of ancient warfare\tjeu de stratégie en temps réel de guerres anciennes\n`);
  const p = preparePairsTsv(file, path.join(dir, 'out'));
  t.deepEqual(p.manifest.counts, { train: 649, dev: 10, test: 14, total: 673 });
  t.true(checkPairsCache(path.join(dir, 'out')).ok);
  t.is(p.manifest.source.kind, 'tsv');
  fs.writeFileSync(file, 'only one side\n');
  t.throws(() => preparePairsTsv(file, path.join(dir, 'out2')), { message: `${file}:1: expected "source<TAB>target", found no tab` });
});

test('mirror URLs and the system mirror rule of .ci/run', (t) => {
  t.is(checkMirror('http://deb.debian.org/debian/'), 'http://deb.debian.org/debian');
  t.is(checkMirror('file:///srv/mirror'), 'file:///srv/mirror');
  t.throws(() => checkMirror('ftp://x/debian'), { message: '--mirror ftp://x/debian: expected an http://, https:// or file: URL, got ftp:' });
  t.throws(() => checkMirror('not a url'), { message: /not a URL/ });
  const etc = tempDir('apt-etc');
  t.is(systemDebianMirror(etc), 'http://deb.debian.org/debian');
  fs.mkdirSync(path.join(etc, 'sources.list.d'));
  fs.writeFileSync(path.join(etc, 'sources.list'), 'deb [arch=amd64] http://mirror.example/debian bookworm main\n');
  t.is(systemDebianMirror(etc), 'http://mirror.example/debian');
  fs.writeFileSync(path.join(etc, 'sources.list.d', 'debian.sources'), 'Types: deb\nURIs: http://other.example/debian\nSuites: bookworm\n');
  t.is(systemDebianMirror(etc), 'http://other.example/debian');
});
