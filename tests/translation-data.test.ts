/**
 * `ttc data ddtp` end to end without the network and without mocks: the real apt-get downloads
 * from a local Debian-style mirror (file: URL) holding the committed excerpt of the real indexes
 * (tests/fixtures/ddtp), with an InRelease signed by a throw-away OpenPGP key that is passed as
 * --keyring — so apt's private configuration, its signature and hash checks, the decompression of a
 * .xz index, the cache and its manifest all run for real. A download from the real Debian mirror is
 * the documented command (docs/translation.md), not a test: CI may be offline.
 */
import test from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';
import { hasCommand, testIf } from './kit/tools.ts';

const FIX = 'tests/fixtures/ddtp';
const TOOLS = hasCommand('apt-get', ['--version']) && hasCommand('gpg', ['--version']) && hasCommand('xz', ['--version']);
const withApt = testIf(TOOLS, 'needs apt-get, gpg and xz');

function ttc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/ttc.mjs', ...args], { timeout: scaled(180_000) }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function gpg(home: string, args: string[], input?: string): Buffer {
  const r = spawnSync('gpg', ['--homedir', home, '--batch', '--quiet', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { input });
  if (r.status !== 0) throw new Error(`gpg ${args.join(' ')}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** A mirror with bookworm/main's Translation-en (plain) and Translation-fr (.xz only), signed by a new key: its URL and the key's keyring file. */
function makeMirror(root: string, name: string, opts: { tamper?: boolean } = {}): { url: string; keyring: string } {
  const home = path.join(root, `${name}-gnupg`);
  fs.mkdirSync(home, { mode: 0o700 });
  gpg(home, ['--quick-gen-key', `ttc test ${name} <ttc@example.invalid>`, 'ed25519', 'sign', 'never']);
  const keyring = path.join(root, `${name}.gpg`);
  fs.writeFileSync(keyring, gpg(home, ['--export']));
  const dists = path.join(root, name, 'dists/bookworm');
  const i18n = path.join(dists, 'main/i18n');
  fs.mkdirSync(i18n, { recursive: true });
  fs.copyFileSync(path.join(FIX, 'Translation-en'), path.join(i18n, 'Translation-en'));
  const xz = spawnSync('xz', ['-c', path.join(FIX, 'Translation-fr')]);
  fs.writeFileSync(path.join(i18n, 'Translation-fr.xz'), xz.stdout);
  // as Debian's Release does: the uncompressed index is listed too (apt checks what it decompresses against it)
  const sum = (b: Buffer, f: string) => ` ${createHash('sha256').update(b).digest('hex')} ${b.length} ${f}`;
  const sums = [
    sum(fs.readFileSync(path.join(FIX, 'Translation-en')), 'main/i18n/Translation-en'),
    sum(fs.readFileSync(path.join(FIX, 'Translation-fr')), 'main/i18n/Translation-fr'),
    sum(xz.stdout, 'main/i18n/Translation-fr.xz'),
  ];
  const release = ['Origin: ttc-test', 'Suite: bookworm', 'Codename: bookworm', `Date: ${new Date().toUTCString()}`, 'Components: main', 'Architectures: amd64', 'SHA256:', ...sums, ''].join('\n');
  fs.writeFileSync(path.join(dists, 'InRelease'), gpg(home, ['--clearsign'], release));
  if (opts.tamper) fs.appendFileSync(path.join(i18n, 'Translation-en'), 'Package: x\n');
  return { url: `file://${path.join(root, name)}`, keyring };
}

/** Names and mtimes under the system's apt state, to show it is left alone. */
function systemAptState(): string {
  const out: string[] = [];
  for (const d of ['/var/lib/apt/lists', '/var/cache/apt']) {
    try {
      for (const n of fs.readdirSync(d)) out.push(`${d}/${n} ${fs.statSync(path.join(d, n)).mtimeMs}`);
    } catch {
      out.push(`${d} absent`);
    }
  }
  return out.join('\n');
}

function mirrorRoot(): string {
  const root = tempDir('ddtp-mirror');
  fs.chmodSync(root, 0o755); // apt run as root reads file: mirrors as the user _apt
  return root;
}

withApt('ttc data ddtp downloads through apt from a signed mirror, caches with checksums, reuses the cache offline', async (t) => {
  const root = mirrorRoot();
  const { url, keyring } = makeMirror(root, 'good');
  const out = path.join(root, 'out');
  const before = systemAptState();
  const r = await ttc(['data', 'ddtp', '--mirror', url, '--keyring', keyring, '--out', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`^DDTP bookworm/main from ${url} \\(InRelease .*; apt-get update [\\d.]+ s, .*\\): downloaded now$`, 'm'));
  t.regex(r.stdout, /145 English, 123 French descriptions; 120 joined on Description-md5; 703 candidate pairs → 673 kept/);
  t.regex(r.stdout, /^673 pairs: train 649, dev 10, test 14 → /m);
  t.is(systemAptState(), before, "the system's apt lists and cache are untouched");
  // apt verified and decompressed them: the raw files are the fixture's bytes
  for (const f of ['Translation-en', 'Translation-fr']) t.true(fs.readFileSync(path.join(out, 'raw', f)).equals(fs.readFileSync(path.join(FIX, f))), f);
  t.is(fs.readFileSync(path.join(out, 'train.tsv'), 'utf8').split('\n').length - 1, 649);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  t.is(manifest.source.mirror, url);
  t.deepEqual(Object.keys(manifest.files).sort(), ['dev.tsv', 'raw/InRelease', 'raw/Translation-en', 'raw/Translation-fr', 'test.tsv', 'train.tsv']);

  const again = await ttc(['data', 'ddtp', '--out', out, '--offline']);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /: verified cache, reused$/m);
  fs.writeFileSync(path.join(out, 'manifest.json'), '{"format": "ttc-pairs-cache", "vers');
  const broken = await ttc(['data', 'ddtp', '--out', out, '--offline']);
  t.is(broken.code, 1);
  t.is(broken.stderr, `ttc data: data cache ${out}: ${path.join(out, 'manifest.json')} is not JSON, and --offline forbids downloading it again\n`);
  // without --offline the broken cache is reported and downloaded again
  const refetched = await ttc(['data', 'ddtp', '--mirror', url, '--keyring', keyring, '--out', out]);
  t.is(refetched.code, 0, refetched.stderr);
  t.regex(refetched.stderr, /manifest\.json is not JSON; downloading it again/);
  t.regex(refetched.stdout, /downloaded now/);
});

withApt("a mirror apt cannot verify is refused in one line: another key, a file that is not the signed one", async (t) => {
  const root = mirrorRoot();
  const good = makeMirror(root, 'signed');
  const other = makeMirror(root, 'other');
  const r = await ttc(['data', 'ddtp', '--mirror', good.url, '--keyring', other.keyring, '--out', path.join(root, 'out1')]);
  t.is(r.code, 1, r.stdout);
  const last = r.stderr.trimEnd().split('\n').pop()!;
  t.regex(last, /^ttc data: apt-get update from file:\/\/.* (failed \(status \d+\)|brought no bookworm\/main Translation-en).*(NO_PUBKEY|not signed|signature)/i);
  t.false(fs.existsSync(path.join(root, 'out1', 'manifest.json')));

  const tampered = makeMirror(root, 'tampered', { tamper: true });
  const h = await ttc(['data', 'ddtp', '--mirror', tampered.url, '--keyring', tampered.keyring, '--out', path.join(root, 'out2')]);
  t.is(h.code, 1, h.stdout);
  t.regex(h.stderr.trimEnd().split('\n').pop()!, /^ttc data: apt-get update from file:\/\/.* failed \(status 100\): E: Failed to fetch file:.*Translation-en Hash Sum mismatch/);
  t.false(fs.existsSync(path.join(root, 'out2', 'manifest.json')));
});
