#!/usr/bin/env python3
"""
PyTorch reference for bench/train.ts: one MLM training step of the same model as shared/model
(post-LN BERT encoder, learned absolute positions, exact-erf GELU, MLM head = dense + GELU +
LayerNorm + decoder tied to the word embeddings with a bias, evaluated on the masked positions
only), AdamW with decoupled weight decay on the dense matrices, global-norm gradient clipping.
Same B, T, V and the same number of masked positions per sequence (round(0.15·(T−2))); token ids
are random (the step time does not depend on them).

  python3 bench/torch_step.py --layers 4 --hidden 256 --heads 4 --ffn 1024 [--seq 64 --vocab 8000
                              --batch 16 --threads 2 --steps 5]
      → one JSON line: {"medianMs": …, "times": […], "params": …, "torch": "…", "threads": 2}
  … --serve
      → warm-up, then {"ready": true, …}; reads "step" (→ {"ms": …, "loss": …}) and "done"
        (→ the result line above, then exits) from stdin. bench/train.ts interleaves these steps
        with the tfjs backends' steps.

Only bench/train.ts uses this, and only when `import torch` works; nothing else depends on it.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-12


class Layer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d, eps=LN_EPS)
        self.ff1 = nn.Linear(d, ffn)
        self.ff2 = nn.Linear(ffn, d)
        self.ln2 = nn.LayerNorm(d, eps=LN_EPS)

    def forward(self, x):  # x: [B, T, d]
        b, t, d = x.shape
        h = self.heads
        dh = d // h
        split = lambda y: y.view(b, t, h, dh).transpose(1, 2)  # [B, h, T, dh]
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, t, d)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class MlmModel(nn.Module):
    def __init__(self, layers, d, heads, ffn, seq, vocab):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.ln = nn.LayerNorm(d, eps=LN_EPS)
        self.layers = nn.ModuleList([Layer(d, heads, ffn) for _ in range(layers)])
        self.head_dense = nn.Linear(d, d)
        self.head_ln = nn.LayerNorm(d, eps=LN_EPS)
        self.head_bias = nn.Parameter(torch.zeros(vocab))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, ids, masked_pos, labels):  # ids [B, T]; masked_pos [M] flat indices into B·T
        b, t = ids.shape
        x = self.word(ids) + self.pos(torch.arange(t, device=ids.device))[None]
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x)
        picked = x.reshape(b * t, -1)[masked_pos]  # MLM head on the masked positions only
        y = self.head_ln(F.gelu(self.head_dense(picked)))
        logits = F.linear(y, self.word.weight, self.head_bias)  # decoder tied to the word embeddings
        return F.cross_entropy(logits, labels)


def blas_info():
    """Which BLAS library this process loaded and what it reports (OpenBLAS: config, core, threads)."""
    import ctypes
    libs = []
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                p = line.split()[-1]
                if ('blas' in p or 'mkl' in p) and p.startswith('/') and p not in libs:
                    libs.append(p)
    except OSError:
        pass
    for p in libs:
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        if hasattr(lib, 'openblas_get_config'):  # the first library that answers is the one in use
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return '%s, kernel %s, %d threads (%s)' % (
                lib.openblas_get_config().decode().strip(), lib.openblas_get_corename().decode(), lib.openblas_get_num_threads(), p)
    return ', '.join(libs) or 'none loaded (torch BLAS_INFO=%s)' % torch.__config__.show().split('BLAS_INFO=')[-1].split(',')[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--layers', type=int, required=True)
    ap.add_argument('--hidden', type=int, required=True)
    ap.add_argument('--heads', type=int, required=True)
    ap.add_argument('--ffn', type=int, required=True)
    ap.add_argument('--seq', type=int, default=64)
    ap.add_argument('--vocab', type=int, default=8000)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--serve', action='store_true')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = MlmModel(a.layers, a.hidden, a.heads, a.ffn, a.seq, a.vocab)
    # decoupled weight decay on dense matrices only (as shared/train/adamw.ts)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith(('word.', 'pos.'))]
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01}, {'params': rest, 'weight_decay': 0.0}], lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    params = sum(p.numel() for p in model.parameters())

    k = max(1, round(0.15 * (a.seq - 2)))
    gen = torch.Generator().manual_seed(1)

    def batch():
        ids = torch.randint(5, a.vocab, (a.batch, a.seq), generator=gen)
        pos = torch.stack([torch.randperm(a.seq - 2, generator=gen)[:k].sort().values + 1 + r * a.seq for r in range(a.batch)]).reshape(-1)
        labels = torch.randint(5, a.vocab, (a.batch * k,), generator=gen)
        return ids, pos, labels

    def step():
        ids, pos, labels = batch()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(ids, pos, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return (time.perf_counter() - t0) * 1000, loss.item()

    def emit(o):
        print(json.dumps(o), flush=True)

    warm, _ = step()
    times = []
    info = {'params': params, 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'warmupMs': warm, 'blas': blas_info()}
    if a.serve:
        emit({'ready': True, **info})
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == 'step':
                ms, loss = step()
                times.append(ms)
                emit({'ms': ms, 'loss': loss})
            elif cmd == 'done':
                break
    else:
        for _ in range(a.steps):
            times.append(step()[0])
    s = sorted(times)
    emit({'medianMs': s[len(s) // 2] if s else None, 'times': times, **info})


if __name__ == '__main__':
    main()
