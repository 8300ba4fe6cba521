/** `ttc data`: the translation experiment's parallel text — DDTP English→French through apt, or a TSV of pairs — cached and checksummed. */
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { checkMirror, DDTP_COMPONENT, DDTP_SUITE, prepareDdtp, preparePairsTsv, type PreparedPairs } from '../../ml/data/ddtp-fetch.ts';
import { outputDirFlag, parseFlags } from '../args.ts';

export const usage = `ttc data (ddtp [--mirror URL] [--keyring FILE] [--offline] | tsv --in <pairs.tsv>) [--out DIR]

Prepares English→French sentence pairs for the translation experiment and prints the pairs per split.
Output directory (--out): train.tsv, dev.tsv, test.tsv (one "english<TAB>french" pair a line) and
manifest.json (SHA-256 of every file, the source, the rules, the counts); docs/translation.md.

  ttc data ddtp   Debian's package-description translations (DDTP), ${DDTP_SUITE}/${DDTP_COMPONENT}: apt-get update
                  downloads Translation-en and Translation-fr under a private configuration (a
                  temporary directory: the system's apt state and settings are not touched, no root
                  needed), they are joined on Description-md5, aligned, filtered and split; the raw
                  files are kept in DIR/raw. A cache that verifies is reused; one that does not is
                  reported and rebuilt (from its raw files when those verify, else downloaded again).
    --mirror URL    the Debian mirror (default: the one this system's apt uses, else deb.debian.org)
    --keyring FILE  the keyring apt checks the mirror's InRelease with
                    (default /usr/share/keyrings/debian-archive-keyring.gpg)
    --offline       never download: a cache that does not verify is an error
    --out DIR       default .cache/ddtp

  ttc data tsv    a TSV of pairs of your own ("english<TAB>french" per line), deduplicated and split
                  like DDTP's (by a hash of the English side: 2% dev, 2% test)
    --in FILE       the TSV file
    --out DIR       required`;

const n = (x: number) => x.toLocaleString('en-US');

function report(p: PreparedPairs): void {
  const m = p.manifest;
  const c = m.counts;
  const how = { cache: 'verified cache, reused', raw: 'rebuilt from the verified raw files', fetched: 'downloaded now', tsv: 'built now' }[p.from];
  if (m.source.kind === 'ddtp') {
    const s = m.source;
    console.log(`DDTP ${s.suite}/${s.component} from ${s.mirror} (InRelease ${s.releaseDate ?? 'date unknown'}; apt-get update ${s.fetchSeconds} s, ${s.fetchedAt}): ${how}`);
    if (m.stats) console.log(`  ${n(m.stats.enEntries)} English, ${n(m.stats.frEntries)} French descriptions; ${n(m.stats.joined)} joined on Description-md5; ${n(m.stats.candidates)} candidate pairs → ${n(c.total)} kept`);
  } else console.log(`pairs from ${m.source.file}: ${how}`);
  console.log(`${n(c.total)} pairs: train ${n(c.train)}, dev ${n(c.dev)}, test ${n(c.test)} → ${path.join(p.dir, '{train,dev,test}.tsv')}`);
}

export async function run(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === 'ddtp') {
    const v = parseFlags(rest, { out: { type: 'string', default: path.join('.cache', 'ddtp') }, mirror: { type: 'string' }, keyring: { type: 'string' }, offline: { type: 'boolean', default: false } }, usage);
    if (v.mirror !== undefined) {
      try {
        checkMirror(v.mirror);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const dir = outputDirFlag('--out', v.out);
    report(prepareDdtp({ dir, mirror: v.mirror, keyring: v.keyring, offline: v.offline, log: (m) => console.error(m) }));
    return 0;
  }
  if (kind === 'tsv') {
    const v = parseFlags(rest, { in: { type: 'string' }, out: { type: 'string' } }, usage);
    if (!v.in || !v.out) throw new UsageError(`ttc data tsv: --in and --out are required\n\n${usage}`);
    report(preparePairsTsv(v.in, outputDirFlag('--out', v.out)));
    return 0;
  }
  throw new UsageError(`${kind === undefined ? 'expected a source' : `unknown source "${kind}"`}: ddtp or tsv\n\n${usage}`);
}
