/**
 * Downstream classification task: WordNet noun definition → lexicographer class
 * ("supersense", e.g. `noun.artifact`).
 *
 * The 10 largest noun classes are used; from each, at most 2,000 synsets are drawn
 * (a seeded shuffle of the class, first 2,000 kept), and each class is split 80/10/10
 * into train/dev/test (stratified: every split has the same class proportions).
 * Everything is deterministic from the seed. The synsets used (train+dev+test) are
 * reserved: the pretraining corpus leaves them out (`reservedSynsetIds`).
 */
import { Rng } from '../../core/rng.ts';
import { loadWordNet, type Synset } from './wordnet.ts';

export interface Example {
  /** The synset's definition (gloss without its examples). */
  text: string;
  /** Index into `labels`. */
  label: number;
  /** Synset id, `<offset>-n`. */
  synset: string;
}

export interface ClassificationSet {
  /** Class names (lexicographer file names), sorted alphabetically; label i = labels[i]. */
  labels: string[];
  train: Example[];
  dev: Example[];
  test: Example[];
}

export const NUM_CLASSES = 10;
export const CAP_PER_CLASS = 2000;
export const SPLIT_FRACTIONS = { train: 0.8, dev: 0.1, test: 0.1 } as const;

/** Mixes a purpose tag into a seed so different uses of one seed get unrelated streams. */
function subRng(seed: number, tag: number): Rng {
  const s = new Rng(seed).getState();
  s[1] = (s[1] ^ tag) >>> 0;
  const r = new Rng(s);
  for (let i = 0; i < 16; i++) r.nextUint32();
  return r;
}

/** The synsets of each lexicographer class, and the task's labels: the 10 largest noun classes (ties broken by name), in alphabetical order. */
function classesOf(): { byClass: Map<string, Synset[]>; labels: string[] } {
  const byClass = new Map<string, Synset[]>();
  for (const s of loadWordNet()) {
    if (s.pos !== 'n' || s.definition === '') continue;
    let list = byClass.get(s.lexName);
    if (!list) byClass.set(s.lexName, (list = []));
    list.push(s);
  }
  // 10 largest classes (ties broken by name), then labelled in alphabetical order.
  const largest = [...byClass.entries()]
    .sort((x, y) => y[1].length - x[1].length || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .slice(0, NUM_CLASSES)
    .map(([name]) => name);
  const labels = [...largest].sort();
  return { byClass, labels };
}

/** The classification task's label names (label i = classLabels()[i]), the same for every seed: what an exported classifier calls its classes. */
export function classLabels(): string[] {
  return classesOf().labels;
}

const memo = new Map<number, ClassificationSet>();

export function buildClassificationSet(seed: number): ClassificationSet {
  const hit = memo.get(seed);
  if (hit) return cloneSet(hit);
  const { byClass, labels } = classesOf();
  const rng = subRng(seed, 0x636c6173); // 'clas'
  const train: Example[] = [];
  const dev: Example[] = [];
  const test: Example[] = [];
  labels.forEach((name, label) => {
    const members = [...byClass.get(name)!]; // file order = offset order: deterministic
    rng.shuffle(members);
    const chosen = members.slice(0, CAP_PER_CLASS);
    const nDev = Math.round(chosen.length * SPLIT_FRACTIONS.dev);
    const nTest = Math.round(chosen.length * SPLIT_FRACTIONS.test);
    const nTrain = chosen.length - nDev - nTest;
    const ex = (s: Synset): Example => ({ text: s.definition, label, synset: s.id });
    for (let i = 0; i < chosen.length; i++) {
      (i < nTrain ? train : i < nTrain + nDev ? dev : test).push(ex(chosen[i]));
    }
  });
  // Interleave the classes.
  rng.shuffle(train);
  rng.shuffle(dev);
  rng.shuffle(test);
  const set = { labels, train, dev, test };
  memo.set(seed, set);
  return cloneSet(set);
}

function cloneSet(s: ClassificationSet): ClassificationSet {
  const c = (xs: Example[]) => xs.map((e) => ({ ...e }));
  return { labels: [...s.labels], train: c(s.train), dev: c(s.dev), test: c(s.test) };
}

/** Ids of every synset used by `buildClassificationSet(seed)` (train, dev and test). */
export function reservedSynsetIds(seed: number): Set<string> {
  const set = buildClassificationSet(seed);
  const ids = new Set<string>();
  for (const xs of [set.train, set.dev, set.test]) for (const e of xs) ids.add(e.synset);
  return ids;
}
