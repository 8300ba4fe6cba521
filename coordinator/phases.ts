/**
 * Where a sweep is, as events for a progress view (`ttc sweep`'s console, cli/sweep-view.ts): each
 * member's pretraining, each fine-tuning, each iterative pruning, the compression cells and the
 * report start, advance and end. The events say nothing a log line does not; a view built on
 * them needs no log parsing.
 */

export type Phase = 'pretrain' | 'finetune' | 'prune' | 'evaluate' | 'report';

export interface PhaseEvent {
  phase: Phase;
  /** what the phase works on: a member's run id, a pruning cell, "cells", the sweep */
  id: string;
  state: 'start' | 'progress' | 'done' | 'skipped';
  /** how far: steps, rounds or cells done of `total` */
  done?: number;
  total?: number;
  /** the last training loss (progress of a fine-tuning) */
  loss?: number;
  /** start: where it stands ("member 2/6 …"); done or skipped: the result in a few words */
  detail?: string;
}

export type PhaseListener = (e: PhaseEvent) => void;
