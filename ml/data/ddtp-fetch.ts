/**
 * The translation data on disk: DDTP's Translation-en / Translation-fr downloaded by apt itself
 * (`apt-get update` under a private configuration: its own sources list, state, cache, log and
 * configuration-parts directories in a temporary directory, so nothing of the system's apt —
 * /etc/apt/apt.conf.d, /var/lib/apt, /var/cache/apt — is read or written, and no root is needed),
 * or a user's TSV of pairs; either way cached as
 *
 *   <dir>/raw/Translation-en, raw/Translation-fr, raw/InRelease   (DDTP only: the files apt verified)
 *   <dir>/train.tsv, dev.tsv, test.tsv                            (ml/data/pairs.ts format)
 *   <dir>/manifest.json                                           (SHA-256 and size of every file above,
 *                                                                  the source, the rules, the counts; written last)
 *
 * Every file is written atomically (core/fs.ts) and the manifest last, so a cache with a manifest is
 * whole. On reuse every file is hashed against the manifest: a cache that fails is reported in one line
 * and rebuilt (from verified raw files when they pass, else downloaded again), or refused (DataError)
 * when fetching is not allowed (`offline`).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataError } from '../../core/errors.ts';
import { isTempName, writeFileAtomic, writeJsonAtomic } from '../../core/fs.ts';
import { alignDdtp, DEFAULT_ALIGN_RULES, DEFAULT_SPLIT, parseTranslationFile, SPLIT_NAMES, splitPairs, type AlignRules, type AlignStats, type SplitFractions, type SplitName } from './ddtp.ts';
import { formatPairsTsv, readPairsFile, readPairsTsv, type Pair } from './pairs.ts';

export const DDTP_SUITE = 'bookworm';
export const DDTP_COMPONENT = 'main';
export const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const MANIFEST = 'manifest.json';
const FORMAT = 'ttc-pairs-cache';
const VERSION = 1;
const RAW = { en: 'raw/Translation-en', fr: 'raw/Translation-fr', release: 'raw/InRelease' } as const;

export interface FileSum {
  sha256: string;
  bytes: number;
}

export interface PairsManifest {
  format: typeof FORMAT;
  version: typeof VERSION;
  source:
    | { kind: 'ddtp'; mirror: string; suite: string; component: string; releaseDate?: string; fetchedAt: string; fetchSeconds: number }
    | { kind: 'tsv'; file: string; sha256: string };
  /** DDTP only: the alignment rules (a user's TSV is taken as it is) */
  rules?: AlignRules;
  split: SplitFractions;
  /** DDTP only */
  stats?: AlignStats;
  counts: Record<SplitName, number> & { total: number };
  files: Record<string, FileSum>;
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function sumOf(data: Uint8Array | string): FileSum {
  return { sha256: sha256Hex(data), bytes: typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength };
}

/**
 * The Debian mirror this system's apt already uses for bookworm (the first `URIs:` ending in /debian
 * of /etc/apt/sources.list.d/*.sources, else the first `deb` line for bookworm in sources.list(.d)/*.list),
 * else http://deb.debian.org/debian — the rule of .ci/run's debian_mirror().
 */
export function systemDebianMirror(etc = '/etc/apt'): string {
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      return '';
    }
  };
  const list = (ext: string) => {
    try {
      return readdirSync(path.join(etc, 'sources.list.d')).filter((n) => n.endsWith(ext)).sort().map((n) => path.join(etc, 'sources.list.d', n));
    } catch {
      return [];
    }
  };
  for (const f of list('.sources')) {
    for (const line of read(f).split('\n')) {
      const m = /^URIs:\s*(\S+)/.exec(line);
      if (m && /\/debian\/?$/.test(m[1]!)) return m[1]!;
    }
  }
  for (const f of [path.join(etc, 'sources.list'), ...list('.list')]) {
    for (const line of read(f).split('\n')) {
      const w = line.replace(/\[[^\]]*\]/, '').trim().split(/\s+/);
      if (w[0] === 'deb' && w[1] && /^bookworm(-updates)?$/.test(w[2] ?? '')) return w[1];
    }
  }
  return 'http://deb.debian.org/debian';
}

/** A mirror URL apt can use here: http(s) or file: (a local mirror), without spaces or brackets. */
export function checkMirror(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DataError(`--mirror ${url}: not a URL (expected e.g. http://deb.debian.org/debian)`);
  }
  if (!['http:', 'https:', 'file:'].includes(u.protocol)) throw new DataError(`--mirror ${url}: expected an http://, https:// or file: URL, got ${u.protocol}`);
  if (/[\s\][]/.test(url)) throw new DataError(`--mirror ${url}: spaces and brackets cannot go into a sources list`);
  return url.replace(/\/+$/, '');
}

export interface AptFetchOptions {
  mirror: string;
  suite?: string;
  component?: string;
  /** the keyring apt verifies the InRelease signature with (signed-by) */
  keyring?: string;
  /** apt-get to run (default: the one on the PATH) */
  aptGet?: string;
  timeoutMs?: number;
  log?: (m: string) => void;
}

export interface AptFetched {
  en: Buffer;
  fr: Buffer;
  inRelease?: Buffer;
  seconds: number;
}

/** Decompresses an index apt kept compressed (it should not: Acquire::GzipIndexes is off). */
function decompress(file: string): Buffer {
  const raw = readFileSync(file);
  const ext = path.extname(file);
  if (ext === '.gz') return gunzipSync(raw);
  const tool: Record<string, string> = { '.xz': 'xz', '.lz4': 'lz4', '.zst': 'zstd', '.bz2': 'bzip2', '.lzma': 'xz' };
  if (!tool[ext]) return raw;
  const r = spawnSync(tool[ext]!, ['-dc', file], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new DataError(`cannot decompress ${file} with ${tool[ext]}: ${r.error?.message ?? r.stderr.toString().trim().split('\n').pop()}`);
  return r.stdout;
}

/**
 * Downloads Translation-en and Translation-fr of `suite`/`component` with `apt-get update` under a
 * private configuration in a temporary directory (removed afterwards). apt fetches and verifies the
 * InRelease (signed-by `keyring`) and the indexes against it; only the Translations are enabled.
 */
export function fetchTranslationsWithApt(opts: AptFetchOptions): AptFetched {
  const suite = opts.suite ?? DDTP_SUITE;
  const component = opts.component ?? DDTP_COMPONENT;
  const keyring = opts.keyring ?? DEFAULT_KEYRING;
  const mirror = checkMirror(opts.mirror);
  if (!existsSync(keyring)) throw new DataError(`the keyring ${keyring} that apt verifies the mirror's InRelease with is missing (Debian's package debian-archive-keyring)`);
  const root = mkdtempSync(path.join(os.tmpdir(), 'ttc-apt-'));
  try {
    const dirs = ['state/lists/partial', 'cache/archives/partial', 'etc/apt.conf.d', 'etc/sources.list.d', 'etc/preferences.d', 'etc/trusted.gpg.d', 'log'];
    for (const d of dirs) mkdirSync(path.join(root, d), { recursive: true });
    // apt run as root downloads as the user _apt (its sandbox), which must be able to enter these directories
    chmodSync(root, 0o755);
    writeFileSync(path.join(root, 'state/status'), '');
    writeFileSync(path.join(root, 'etc/sources.list'), `deb [signed-by=${keyring}] ${mirror} ${suite} ${component}\n`);
    const q = (s: string) => JSON.stringify(s);
    const conf = [
      `Dir::State ${q(path.join(root, 'state'))};`,
      `Dir::State::status ${q(path.join(root, 'state/status'))};`,
      `Dir::Cache ${q(path.join(root, 'cache'))};`,
      `Dir::Etc ${q(path.join(root, 'etc'))};`,
      `Dir::Etc::sourcelist ${q(path.join(root, 'etc/sources.list'))};`,
      `Dir::Etc::sourceparts ${q(path.join(root, 'etc/sources.list.d'))};`,
      // no /etc/apt/apt.conf.d: its hooks (APT::Update::Post-Invoke…) and settings (Acquire::Languages "none") stay out
      `Dir::Etc::parts ${q(path.join(root, 'etc/apt.conf.d'))};`,
      `Dir::Etc::main ${q(path.join(root, 'etc/apt.conf'))};`,
      `Dir::Etc::preferences ${q(path.join(root, 'etc/preferences'))};`,
      `Dir::Etc::preferencesparts ${q(path.join(root, 'etc/preferences.d'))};`,
      `Dir::Etc::trusted ${q(path.join(root, 'etc/trusted.gpg'))};`,
      `Dir::Etc::trustedparts ${q(path.join(root, 'etc/trusted.gpg.d'))};`,
      `Dir::Log ${q(path.join(root, 'log'))};`,
      'Acquire::Languages { "en"; "fr"; };',
      'Acquire::GzipIndexes "false";',
      'Acquire::PDiffs "false";',
      'Acquire::IndexTargets::deb::Packages::DefaultEnabled "false";',
      'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";',
      'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";',
      'APT::Get::List-Cleanup "false";',
      '',
    ].join('\n');
    const confFile = path.join(root, 'apt.conf');
    writeFileSync(confFile, conf);
    const t0 = Date.now();
    const r = spawnSync(opts.aptGet ?? 'apt-get', ['-q', 'update'], {
      env: { ...process.env, APT_CONFIG: confFile, LC_ALL: 'C' },
      encoding: 'utf8',
      timeout: opts.timeoutMs ?? 600_000,
      maxBuffer: 64 << 20,
    });
    const seconds = (Date.now() - t0) / 1000;
    // what apt said, in one line: its first error (E:), else its first warning (W:), else its last line
    const lastLine = (s: string) => {
      const lines = s.trim().split('\n').map((l) => l.trim());
      const first = (p: string) => lines.find((l) => l.startsWith(p));
      return first('E:') ?? first('W:') ?? lines.pop() ?? '';
    };
    if (r.error) {
      const code = (r.error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new DataError('apt-get is not installed: ttc data ddtp downloads through apt (a Debian or Ubuntu system); give a TSV of pairs with ttc data tsv instead');
      if (code === 'ETIMEDOUT') throw new DataError(`apt-get update from ${mirror} did not finish in ${Math.round((opts.timeoutMs ?? 600_000) / 1000)} s`);
      throw new DataError(`apt-get update could not run: ${r.error.message}`);
    }
    for (const l of `${r.stdout}\n${r.stderr}`.split('\n')) if (/^(W|E|Err):/.test(l.trim())) opts.log?.(`apt-get: ${l.trim()}`);
    if (r.status !== 0) throw new DataError(`apt-get update from ${mirror} failed (status ${r.status}): ${lastLine(`${r.stdout}\n${r.stderr}`).replace(/\s+/g, ' ')}`);
    const lists = path.join(root, 'state/lists');
    const names = readdirSync(lists);
    const find = (lang: string) => {
      const name = names.find((n) => new RegExp(`_dists_${suite}_${component}_i18n_Translation-${lang}(\\.(gz|xz|lz4|zst|bz2|lzma))?$`).test(n));
      if (!name) throw new DataError(`apt-get update from ${mirror} brought no ${suite}/${component} Translation-${lang} (apt said: ${lastLine(`${r.stdout}\n${r.stderr}`).replace(/\s+/g, ' ') || 'nothing'})`);
      return decompress(path.join(lists, name));
    };
    const en = find('en');
    const fr = find('fr');
    const rel = names.find((n) => n.endsWith(`_dists_${suite}_InRelease`));
    return { en, fr, inRelease: rel ? readFileSync(path.join(lists, rel)) : undefined, seconds };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The `Date:` field of an InRelease file. */
export function releaseDate(inRelease: Buffer | undefined): string | undefined {
  return inRelease ? /^Date:\s*(.+)$/m.exec(inRelease.toString('utf8'))?.[1]?.trim() : undefined;
}

export type CacheCheck = { ok: true; manifest: PairsManifest } | { ok: false; problem: string; manifest?: PairsManifest; rawOk: boolean };

function isManifest(m: unknown): m is PairsManifest {
  const o = m as PairsManifest;
  return (
    typeof o === 'object' && o !== null && o.format === FORMAT && o.version === VERSION &&
    typeof o.files === 'object' && o.files !== null && Object.values(o.files).every((f) => typeof f?.sha256 === 'string' && Number.isInteger(f?.bytes)) &&
    typeof o.counts === 'object' && o.counts !== null && typeof o.source === 'object' && o.source !== null
  );
}

/** Reads and hashes a cache directory against its manifest. */
export function checkPairsCache(dir: string): CacheCheck {
  const mf = path.join(dir, MANIFEST);
  let text: string;
  try {
    text = readFileSync(mf, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, problem: code === 'ENOENT' ? `no ${MANIFEST}` : `${mf} unreadable (${code})`, rawOk: false };
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch {
    return { ok: false, problem: `${mf} is not JSON`, rawOk: false };
  }
  if (!isManifest(manifest)) return { ok: false, problem: `${mf} is not a ${FORMAT} v${VERSION} manifest`, rawOk: false };
  const bad: string[] = [];
  for (const [rel, sum] of Object.entries(manifest.files)) {
    if (rel.split('/').includes('..') || path.isAbsolute(rel)) return { ok: false, problem: `${mf} names a file outside the cache: ${rel}`, rawOk: false };
    let data: Buffer;
    try {
      data = readFileSync(path.join(dir, rel));
    } catch (e) {
      bad.push(`${rel} ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : 'is unreadable'}`);
      continue;
    }
    const got = sha256Hex(data);
    if (got !== sum.sha256) bad.push(`${rel} has sha256 ${got.slice(0, 12)}…, the manifest ${sum.sha256.slice(0, 12)}…`);
  }
  const rawOk = manifest.files[RAW.en] !== undefined && manifest.files[RAW.fr] !== undefined && !bad.some((b) => b.startsWith('raw/'));
  for (const s of SPLIT_NAMES) if (!manifest.files[`${s}.tsv`]) bad.push(`${s}.tsv is not in the manifest`);
  if (bad.length) return { ok: false, problem: `${bad.length === 1 ? bad[0] : `${bad[0]} (and ${bad.length - 1} more)`}`, manifest, rawOk };
  return { ok: true, manifest };
}

export interface PreparedPairs {
  dir: string;
  manifest: PairsManifest;
  /** 'cache': verified and reused; 'raw': rebuilt from the verified raw files; 'fetched' / 'tsv': built now */
  from: 'cache' | 'raw' | 'fetched' | 'tsv';
}

/** Writes the splits, then the manifest (last), into `dir`. */
function writeSplits(dir: string, pairs: readonly Pair[], split: SplitFractions, files: Record<string, FileSum>, rest: Pick<PairsManifest, 'source' | 'rules' | 'stats'>): PairsManifest {
  const parts = splitPairs(pairs, split);
  const all = { ...files };
  for (const s of SPLIT_NAMES) {
    const text = formatPairsTsv(parts[s]);
    writeFileAtomic(path.join(dir, `${s}.tsv`), text);
    all[`${s}.tsv`] = sumOf(text);
  }
  const manifest: PairsManifest = {
    format: FORMAT,
    version: VERSION,
    ...rest,
    split,
    counts: { train: parts.train.length, dev: parts.dev.length, test: parts.test.length, total: pairs.length },
    files: all,
  };
  writeJsonAtomic(path.join(dir, MANIFEST), manifest);
  return manifest;
}

function sameFile(file: string, sum: FileSum): boolean {
  try {
    if (statSync(file).size !== sum.bytes) return false;
    return sha256Hex(readFileSync(file)) === sum.sha256;
  } catch {
    return false;
  }
}

/** How old a writer's temporary must be to be a killed writer's leftover (writers rename theirs within seconds). */
const STALE_TMP_MS = 10 * 60_000;

/** Creates `dir` (and `sub` in it), removing writers' temporaries a killed `ttc data` left there. */
function makeDir(dir: string, sub?: string): void {
  try {
    mkdirSync(sub ? path.join(dir, sub) : dir, { recursive: true });
  } catch (e) {
    throw new DataError(`cannot create the data directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  for (const d of sub ? [dir, path.join(dir, sub)] : [dir]) {
    for (const name of readdirSync(d)) {
      if (!isTempName(name)) continue;
      try {
        if (Date.now() - statSync(path.join(d, name)).mtimeMs > STALE_TMP_MS) rmSync(path.join(d, name), { force: true });
      } catch {
        // renamed meanwhile by its writer
      }
    }
  }
}

/** Aligns raw Translation files (bytes) and writes the cache (raw files, splits, manifest). */
export function buildDdtpCache(dir: string, raw: { en: Buffer; fr: Buffer; inRelease?: Buffer }, source: Extract<PairsManifest['source'], { kind: 'ddtp' }>, rules: AlignRules = DEFAULT_ALIGN_RULES, split: SplitFractions = DEFAULT_SPLIT): PairsManifest {
  makeDir(dir, 'raw');
  const decode = (b: Buffer, name: string) => {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      throw new DataError(`${name}: not valid UTF-8`);
    }
  };
  const en = parseTranslationFile(decode(raw.en, RAW.en), 'en', path.join(dir, RAW.en));
  const fr = parseTranslationFile(decode(raw.fr, RAW.fr), 'fr', path.join(dir, RAW.fr));
  const { pairs, stats } = alignDdtp(en, fr, rules);
  if (pairs.length === 0) throw new DataError(`no aligned pairs in ${path.join(dir, 'raw')} (${stats.enEntries} English and ${stats.frEntries} French descriptions, ${stats.joined} joined)`);
  const files: Record<string, FileSum> = {};
  const write = (rel: string, data: Buffer) => {
    const sum = sumOf(data);
    // rebuilt from the raw files: they are already there, byte for byte
    if (!sameFile(path.join(dir, rel), sum)) writeFileAtomic(path.join(dir, rel), data);
    files[rel] = sum;
  };
  write(RAW.en, raw.en);
  write(RAW.fr, raw.fr);
  if (raw.inRelease) write(RAW.release, raw.inRelease);
  return writeSplits(dir, pairs, split, files, { source, rules, stats });
}

export interface PrepareDdtpOptions {
  dir: string;
  /** default: the system's Debian mirror (systemDebianMirror) */
  mirror?: string;
  keyring?: string;
  /** never download: a cache that fails verification (and whose raw files do too) is an error */
  offline?: boolean;
  rules?: AlignRules;
  split?: SplitFractions;
  log?: (m: string) => void;
  /** the download (default: fetchTranslationsWithApt) */
  fetch?: (o: AptFetchOptions) => AptFetched;
}

const sameRules = (m: PairsManifest, rules: AlignRules, split: SplitFractions) => JSON.stringify(m.rules) === JSON.stringify(rules) && JSON.stringify(m.split) === JSON.stringify(split);

/** The DDTP pairs in `dir`: reused when they verify, rebuilt from verified raw files, else downloaded (module comment). */
export function prepareDdtp(opts: PrepareDdtpOptions): PreparedPairs {
  const { dir } = opts;
  const rules = opts.rules ?? DEFAULT_ALIGN_RULES;
  const split = opts.split ?? DEFAULT_SPLIT;
  const log = opts.log ?? ((m: string) => console.warn(m));
  const check = checkPairsCache(dir);
  if (check.ok && check.manifest.source.kind !== 'ddtp') throw new DataError(`${dir} holds pairs from ${check.manifest.source.kind === 'tsv' ? check.manifest.source.file : 'elsewhere'}, not DDTP: choose another --out`);
  if (check.ok && sameRules(check.manifest, rules, split)) return { dir, manifest: check.manifest, from: 'cache' };
  const manifest = check.manifest;
  const fromRaw = manifest?.source.kind === 'ddtp' && (check.ok || check.rawOk);
  if (!check.ok && existsSync(path.join(dir, MANIFEST)) && (fromRaw || !opts.offline)) {
    log(`data cache ${dir}: ${check.problem}; ${fromRaw ? 'rebuilding the pairs from its verified raw files' : 'downloading it again'}`);
  }
  if (manifest?.source.kind === 'ddtp' && fromRaw) {
    // the raw files verify: rebuild the splits from them, no download
    const read = (rel: string) => readFileSync(path.join(dir, rel));
    const m = buildDdtpCache(dir, { en: read(RAW.en), fr: read(RAW.fr), inRelease: manifest.files[RAW.release] ? read(RAW.release) : undefined }, manifest.source, rules, split);
    return { dir, manifest: m, from: 'raw' };
  }
  if (opts.offline) throw new DataError(`data cache ${dir}: ${check.ok ? 'built by other rules' : check.problem}, and --offline forbids downloading it again`);
  const mirror = checkMirror(opts.mirror ?? systemDebianMirror());
  const fetched = (opts.fetch ?? fetchTranslationsWithApt)({ mirror, keyring: opts.keyring, log });
  const m = buildDdtpCache(dir, fetched, {
    kind: 'ddtp', mirror, suite: DDTP_SUITE, component: DDTP_COMPONENT, releaseDate: releaseDate(fetched.inRelease),
    fetchedAt: new Date().toISOString(), fetchSeconds: Math.round(fetched.seconds * 10) / 10,
  }, rules, split);
  return { dir, manifest: m, from: 'fetched' };
}

/** A user's TSV of pairs, split like DDTP's (deduplicated, the same hash split) into `dir`. */
export function preparePairsTsv(file: string, dir: string, split: SplitFractions = DEFAULT_SPLIT): PreparedPairs {
  const { pairs, bytes } = readPairsFile(file);
  const seen = new Set<string>();
  const unique = pairs.filter((p) => {
    const k = `${p.en}\t${p.fr}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (unique.length === 0) throw new DataError(`${file}: no pairs`);
  makeDir(dir);
  const m = writeSplits(dir, unique, split, {}, { source: { kind: 'tsv', file: path.resolve(file), sha256: sha256Hex(bytes) } });
  return { dir, manifest: m, from: 'tsv' };
}

/** The pairs of one split of a verified cache (DataError when it does not verify). */
export function loadSplit(dir: string, split: SplitName): Pair[] {
  const check = checkPairsCache(dir);
  if (!check.ok) throw new DataError(`data cache ${dir}: ${check.problem} (run ttc data to rebuild it)`);
  return readPairsTsv(path.join(dir, `${split}.tsv`));
}
