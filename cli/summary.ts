/** How a finished (or stopped) training run is described on the terminal. */
import type { RunSummary } from '../ml/train/controller.ts';

export function describeSummary(s: RunSummary): string {
  const verdict = s.finalValLoss < s.unigramBaseline ? 'below' : 'NOT below';
  return [
    `run ${s.runId} ${s.completed ? 'completed its budget' : 'stopped early (resumable)'}: ${s.steps}/${s.totalSteps} steps, ${s.flopsUsed.toExponential(3)} FLOPs, ${s.secondsUsed.toFixed(1)} s of training, ${s.tokensSeen.toLocaleString('en')} tokens`,
    `backend: ${s.backend} (${s.backendDetail}); model ${s.parameters.toLocaleString('en')} parameters`,
    s.bleu === undefined
      ? `validation loss ${s.finalValLoss.toFixed(4)} (perplexity ${s.finalValPerplexity.toFixed(1)}), ${verdict} the uniform baseline ln(vocab) = ${s.unigramBaseline.toFixed(4)}; unigram-frequency baseline ${s.unigramEntropy.toFixed(4)}`
      : `translation: evaluation loss ${s.finalValLoss.toFixed(4)} (${verdict} the uniform baseline ln(vocab) = ${s.unigramBaseline.toFixed(4)}); BLEU ${(s.bleu ?? NaN).toFixed(2)} greedy, ${(s.bleuBeam ?? NaN).toFixed(2)} beam search`,
    `results: ${s.runDir}/ (config.json, metrics.jsonl, checkpoints/, summary.json, train.log)`,
  ].join('\n');
}
