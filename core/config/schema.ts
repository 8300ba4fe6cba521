/**
 * The run configuration: one convict schema, the single source of truth for every field,
 * its default, its validation and its documentation (docs/config.md is generated from it
 * by `npm run docs:config`, and a test keeps the two in sync).
 */
import convict from 'convict';

const show = (v: unknown) => (typeof v === 'number' ? String(v) : JSON.stringify(v));
const num = (n: number) => n.toLocaleString('en');

/** A field validator that also says what it accepts: `expected` in errors, `accepts` in docs/config.md. */
type Format = ((v: unknown) => void) & { accepts: string };
function format(expected: string, accepts: string, ok: (v: number) => boolean): Format {
  const check = (v: unknown) => {
    if (typeof v !== 'number' || !ok(v)) throw new Error(`expected ${expected}, got ${show(v)}`);
  };
  return Object.assign(check, { accepts });
}

/** A safe integer (counts and sizes never lose precision) in min..max. */
function integer(min: number, max = Number.MAX_SAFE_INTEGER): Format {
  const bounded = max < Number.MAX_SAFE_INTEGER;
  const expected = min === 1 ? `a positive integer${bounded ? ` <= ${num(max)}` : ''}` : bounded ? `an integer in ${num(min)}..${num(max)}` : `an integer >= ${num(min)}`;
  const accepts = bounded ? `integer ${num(min)}..${num(max)}` : `integer ≥ ${min}`;
  return format(expected, accepts, (v) => Number.isSafeInteger(v) && v >= min && v <= max);
}

/** A finite number in [0, max] (`maxText`: max as written in messages and docs). */
const nonNegative = (max = Infinity, maxText = String(max)) =>
  max === Infinity ? format('a finite number >= 0', 'number ≥ 0', (v) => Number.isFinite(v) && v >= 0) : format(`a number in [0, ${maxText}]`, `number in [0, ${maxText}]`, (v) => v >= 0 && v <= max);

const positiveInt = integer(1);
const natural = integer(0);
const nonNegativeNumber = nonNegative();
const fraction = format('a number in [0, 1)', 'number in [0, 1)', (v) => v >= 0 && v < 1);

/**
 * The most elements one typed array holds (V8 in Node 20: `new Float32Array(2 ** 32 + 1)` throws
 * "Invalid typed array length"). tfjs keeps every tensor in one, so a tensor a step allocates whole
 * (embeddings, a layer's activations, attention scores) must fit: checked with the config, whatever
 * the machine's memory.
 */
export const MAX_TYPED_ARRAY_LENGTH = 2 ** 32;
/** Steps travel as unsigned 32-bit integers in the protocol (step numbers, totals). */
const MAX_STEPS = 2 ** 32 - 1;

/**
 * A run id as it names a directory (<outputDir>/<runId>/, a run server's run): letters, digits,
 * ".", "_" and "-", not starting with "." — so never "..", an absolute path or a nested one.
 * The one pattern for every run id: this schema, the protocol's messages, the CLI's --run flags.
 */
export const RUN_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const RUN_ID_RULE = 'letters, digits, ".", "_" and "-", at most 128, not starting with "."';

/** What is wrong with a run id ('' = none given: derived), or undefined when it is one. */
export function runIdProblem(v: unknown): string | undefined {
  return typeof v === 'string' && (v === '' || RUN_ID.test(v)) ? undefined : `expected a run id (${RUN_ID_RULE}: it names a directory), got ${show(v)}`;
}

const runIdFormat: Format = Object.assign(
  (v: unknown) => {
    const problem = runIdProblem(v);
    if (problem) throw new Error(problem);
  },
  { accepts: 'run id' },
);

export const configSchema = {
  runId: {
    doc: `Run identifier: results go to <outputDir>/<runId>/ (${RUN_ID_RULE}; never a path). Empty = derived from the config file name and a timestamp.`,
    format: runIdFormat,
    default: '',
  },
  outputDir: { doc: 'Directory that holds one sub-directory per run.', format: String, default: 'runs' },
  cacheDir: { doc: 'Directory for the tokenizer and packed-data cache.', format: String, default: '.cache' },
  seed: { doc: 'Seed for weights, data split, shuffling and masking.', format: format('a safe integer', 'integer', Number.isSafeInteger), default: 1234 },
  trainSeed: {
    doc: 'Seed for the weight initialisation, the training data order and its masks only (0 = seed). A sweep with seeds: n varies it, while seed (data split, tokenizer, validation set, classification split) stays.',
    format: natural,
    default: 0,
  },
  backend: {
    doc: 'Compute backend. auto = tensorflow (tfjs-node-gpu/tfjs-node) → webgpu (real GPU adapter only) → fastest CPU path.',
    format: ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'],
    default: 'auto' as 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu',
  },
  fastKernels: {
    doc: 'On CPU backends (wasm, cpu), run matrix products in the BLAS-class kernels of ml/kernels (onnxruntime MLAS) when they load; false = plain tfjs kernels.',
    format: Boolean,
    default: true,
  },
  fusedKernels: {
    doc: "Run the encoder's LayerNorm, bias + GELU, attention, softmax cross-entropy and embedding gradient as fused kernels where the backend has one that passes its start-up self-test (ml/kernels/fused.ts); false = tfjs's own kernels throughout.",
    format: Boolean,
    default: true,
  },
  threads: {
    doc: 'CPU threads the compute backend may use (0 = all available cores).',
    format: natural,
    default: 0,
  },
  task: {
    doc: 'What the run trains: mlm (masked-language-model pretraining on the corpus, the paper\'s first experiment) or translation (an encoder–decoder on English→French pairs, the second; see the translation section and docs/translation.md).',
    format: ['mlm', 'translation'],
    default: 'mlm' as 'mlm' | 'translation',
  },
  model: {
    layers: { doc: 'Number of Transformer encoder layers (at most 1,024: deeper than any encoder trained; what the rest needs is checked against memory before a run starts).', format: integer(1, 1024), default: 2 },
    hidden: { doc: 'Hidden size d (must be divisible by model.heads; at most 65,536: a d × d weight then fills the largest typed array, 2^32 elements).', format: integer(1, 65536), default: 128 },
    heads: { doc: 'Attention heads per layer.', format: positiveInt, default: 2 },
    ffn: { doc: 'Feed-forward inner size (usually 4 × hidden; at most 262,144, and hidden × ffn at most 2^32, one typed array).', format: integer(1, 262144), default: 512 },
    seqLen: { doc: 'Sequence length in tokens (also the number of learned positions; at most 65,536: one head\'s attention scores over one sequence, seqLen², must fit a typed array, and batchSize × heads × seqLen² too).', format: integer(8, 65536), default: 64 },
    vocab: { doc: 'Subword vocabulary size (tokenizer trained to this size, specials included; at most 1,048,576, four times the largest subword vocabularies in use, and vocab × hidden at most 2^32, one typed array).', format: integer(64, 1048576), default: 4000 },
    initStd: { doc: 'Standard deviation of the normal weight initialisation.', format: nonNegativeNumber, default: 0.02 },
    precision: {
      doc: 'fp32, or mixed: matrix products with f16 operands and f32 accumulation (webgpu with an adapter offering shader-f16), fp32 master weights and optimizer state, dynamic loss scaling. With backend webgpu and no shader-f16 the run is refused; with backend auto it trains in fp32 and the log says why. See docs/gpu.md, "Mixed precision".',
      format: ['fp32', 'mixed'],
      default: 'fp32' as 'fp32' | 'mixed',
    },
  },
  data: {
    validationFraction: { doc: 'Fraction of pretraining documents held out for validation.', format: fraction, default: 0.02 },
    extraTextFiles: { doc: 'Extra UTF-8 text files added to the pretraining corpus.', format: Array, default: [] as string[] },
    maxValidationSequences: { doc: 'Validation sequences evaluated each time (0 = all).', format: natural, default: 256 },
  },
  translation: {
    pairs: { doc: 'task translation: the parallel text, a `ttc data` directory (train.tsv, dev.tsv, test.tsv) or one TSV file (source<TAB>target per line, split into train/dev/test by `ttc data`\'s rule).', format: String, default: '' },
    decoderLayers: { doc: 'task translation: decoder layers (0 = model.layers, the encoder\'s depth). Width, heads and FFN size are model.hidden, model.heads and model.ffn for both; model.vocab is the one subword vocabulary shared by both languages; model.seqLen caps each side.', format: integer(0, 1024), default: 0 },
    evalSplit: { doc: 'task translation: the split every evaluation measures (loss and BLEU).', format: ['dev', 'test'], default: 'dev' as 'dev' | 'test' },
    evalPairs: { doc: 'task translation: pairs of the evaluation split each evaluation loss and BLEU use (its first N; 0 = all).', format: natural, default: 200 },
    beam: { doc: 'task translation: beam width of the beam-search BLEU each evaluation also reports (1 = greedy only).', format: integer(1, 64), default: 4 },
    lengthAlpha: { doc: 'task translation: beam search ranks finished hypotheses by (sum of log-probabilities) / length^alpha (0 = no length normalization).', format: nonNegative(10, '10'), default: 1 },
  },
  optimizer: {
    lr: { doc: 'Peak learning rate (AdamW), in (0, 10]: 0 trains nothing, above 10 AdamW diverges at once (its steps are ~lr per weight).', format: format('a number in (0, 10]', 'number in (0, 10]', (v) => v > 0 && v <= 10), default: 1e-3 },
    beta1: { doc: 'AdamW β1.', format: fraction, default: 0.9 },
    beta2: { doc: 'AdamW β2.', format: fraction, default: 0.98 },
    epsilon: { doc: 'AdamW ε.', format: nonNegativeNumber, default: 1e-6 },
    weightDecay: { doc: 'Decoupled weight decay (not applied to biases, LayerNorm and embeddings).', format: nonNegativeNumber, default: 0.01 },
    warmupFraction: { doc: 'Fraction of the budgeted steps spent in linear warm-up.', format: fraction, default: 0.06 },
    gradClipNorm: { doc: 'Clip the global gradient norm to this value (0 = no clipping).', format: nonNegativeNumber, default: 1.0 },
    threads: {
      doc: "Worker threads for the optimizer update when it runs on the CPU (gradient clip + AdamW in JS; see optimizer.device); 0 = auto: for models of at least 1M parameters up to 8, within the cores and the process's cgroup CPU limit (a pod's limits.cpu), else 1. The result is bit-identical for any value.",
      format: natural,
      default: 0,
    },
    device: {
      doc: 'Where the optimizer update (gradient clip + AdamW) runs. auto: on the GPU when the backend is webgpu and the worker has no peers (`ttc train`, a ring of one): no gradient is read back, weights and moments stay on the device (docs/gpu.md); otherwise on the CPU. cpu: always on the CPU (gradients read back). gpu: like auto, but a backend other than webgpu is an error. With peers the update is on the CPU whatever this says (the ring reduces host buffers), and so it is with model.precision mixed (the GPU update has no loss scaling: gpu is then refused).',
      format: ['auto', 'cpu', 'gpu'],
      default: 'auto' as 'auto' | 'cpu' | 'gpu',
    },
  },
  train: {
    batchSize: { doc: 'Sequences per optimizer step per worker (at most 65,536; batchSize × seqLen × max(hidden, ffn), a layer\'s activations, must fit a typed array, and the step must fit the memory of the machine, checked before a run starts).', format: integer(1, 65536), default: 16 },
    evalEvery: { doc: 'Evaluate validation loss every K steps (and at the last step).', format: positiveInt, default: 50 },
    checkpointEvery: { doc: 'Write a checkpoint every K steps (and at the last step).', format: positiveInt, default: 100 },
    logEvery: { doc: 'Write a metrics row for training loss every K steps.', format: positiveInt, default: 1 },
  },
  dist: {
    minWorkers: { doc: 'The fewest workers a run continues with after a failure (and, unless dist.initialWorkers is set, the number waited for before the first ring).', format: positiveInt, default: 1 },
    initialWorkers: { doc: 'Workers the coordinator waits for before it forms the first ring (0 = dist.minWorkers).', format: natural, default: 0 },
    maxWorkers: { doc: 'Most workers put into one ring (0 = every connected worker).', format: natural, default: 0 },
    waitForWorkersSeconds: { doc: 'How long the coordinator waits for minWorkers before it gives up (0 = forever).', format: nonNegativeNumber, default: 600 },
    stepTimeoutSeconds: { doc: 'A step (or evaluation, checkpoint transfer) not reported by every worker within this time fails the ring formation; the stalled worker is named and dropped.', format: nonNegativeNumber, default: 300 },
    ringTimeoutSeconds: { doc: 'A ring peer silent this long during an all-reduce is declared dead.', format: nonNegativeNumber, default: 30 },
    hashEvery: { doc: 'Every K steps workers report a hash of their parameters; any divergence stops the run.', format: positiveInt, default: 25 },
    segmentBytes: { doc: 'Ring all-reduce segment size in bytes (sending, receiving and adding overlap per segment; at most 1 GiB).', format: integer(1, 2 ** 30), default: 1048576 },
    shardOptimizer: { doc: 'ZeRO stage 1 with more than one worker: gradients are reduce-scattered, each worker clips and updates (and keeps AdamW moments for) 1/N of the parameters, the weights are all-gathered. Bit-identical to the unsharded update; false = all-reduce and a full update on every worker.', format: Boolean, default: true },
    gradWire: {
      doc: 'How gradients travel in the reduction: f32, or bf16 (half the bytes, each partial sum rounded to bf16) with error feedback (what rounding dropped from a worker\'s gradient is added to its next one). Every worker of a ring uses the run\'s value.',
      format: ['f32', 'bf16'],
      default: 'f32' as 'f32' | 'bf16',
    },
    bucketBytes: { doc: 'Gradient bucket size in bytes: gradients are read back and reduced bucket by bucket in the backward pass\'s order, each bucket\'s reduction overlapping the read-back of the next (whole parameters; a bigger parameter is a bucket of its own). Changes the last bits of the gradient norm. At most 1 GiB.', format: integer(1, 2 ** 30), default: 4194304 },
  },
  budget: {
    kind: {
      doc: 'What bounds the run: flops (total training FLOPs over all workers), seconds (wall clock) or steps.',
      format: ['flops', 'seconds', 'steps'],
      default: 'steps' as 'flops' | 'seconds' | 'steps',
    },
    flops: { doc: 'Total training FLOP budget (budget.kind = flops; at most 1e30, ~10,000× the largest training runs to date).', format: nonNegative(1e30, '1e30'), default: 0 },
    seconds: { doc: 'Wall-clock budget in seconds of training (budget.kind = seconds; at most 1e9, ~31 years). The step count is re-estimated before each step from the measured step time; a step that runs past the budget before the planned last step is followed by one closing step at LR 0, so the schedule always ends (overshoot: at most one step).', format: nonNegative(1e9, '1e9'), default: 0 },
    steps: { doc: 'Optimizer steps (budget.kind = steps; at most 4,294,967,295: steps travel as unsigned 32-bit integers in the protocol).', format: integer(0, MAX_STEPS), default: 100 },
    calibrationSteps: {
      doc: 'For a seconds budget: steps timed first to turn seconds into a step count (they count against the budget).',
      format: positiveInt,
      default: 3,
    },
  },
};

export type ConfigSchema = typeof configSchema;
export const makeConvict = () => convict(configSchema);
export type Config = ReturnType<ReturnType<typeof makeConvict>['getProperties']>;

/** The seed of what a repeated run varies: initial weights, data order, masks (config.trainSeed, else config.seed). */
export function trainSeedOf(config: Pick<Config, 'seed' | 'trainSeed'>): number {
  return config.trainSeed || config.seed;
}
