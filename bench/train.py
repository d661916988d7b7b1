"""Trainer throughput against a minimal plain-PyTorch loop over the same model and batches.

The baseline is the smallest loop that does the same optimisation (AdamW, gradient clipping, the same
micro-batches materialised in memory beforehand): forward, backward, clip, step. The trainer runs the
same number of optimizer steps through :meth:`mixlab.train.Trainer.train_until`, which also draws the
batches from the sampler, sets the learning rate, checks the loss for NaN and records it. Both start
from the same initial weights and advance in alternating chunks of a few steps (ABBA order); the
ratio is the median over adjacent pairs, which keeps it meaningful on a machine shared with other
work. Evaluation throughput (``evaluate_domains`` tokens/s) is printed too.

Usage: ``python bench/train.py [--model tiny-1m] [--steps 10] [--repeats 3] [--also small-10m]``.
The last line is ``train_ratio=<trainer tokens/s / plain loop tokens/s>`` (target >= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch


def plain_loop(model: torch.nn.Module, batches: list, opt: torch.optim.Optimizer, *, clip: float,
               device: torch.device) -> float:
    """Seconds for one optimizer step per batch with the simplest correct loop."""
    model.train()
    t0 = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-1m")
    ap.add_argument("--also", default="small-10m", help="comma-separated presets to report tokens/s for ('' = none)")
    ap.add_argument("--corpus", default=None, help="prepared corpus (default: the built-in corpus)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=2, help="steps per timed chunk in the interleaved comparison")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--peak-flops", type=float, default=989e12, help="accelerator peak (H100 SXM dense bf16)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mixlab.data import Corpus, MixtureSampler, builtin_corpus
    from mixlab.train import TrainConfig, Trainer, build_model

    corpus = Corpus.open(args.corpus) if args.corpus else builtin_corpus()
    workdir = tempfile.mkdtemp(prefix="mixlab-bench-")
    print(f"corpus {corpus.root} ({len(corpus.domains)} domains, vocab {corpus.vocab_size}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    def config(preset: str, steps: int) -> TrainConfig:
        # the budget is twice the timed steps so no evaluation/checkpoint falls inside them
        return TrainConfig(
            model=preset, tokens=2 * steps * args.seq_len * args.batch_size, seq_len=args.seq_len,
            batch_size=args.batch_size, lr=1e-3, warmup=0.0, lr_schedule="constant", grad_clip=1.0,
            eval_interval=10 * steps, checkpoint_interval=10 * steps, eval_batches=4, device=args.device,
            progress=False, out_dir=tempfile.mkdtemp(dir=workdir),
        )

    def trainer_seconds(preset: str, steps: int) -> tuple[float, Trainer]:
        trainer = Trainer(config(preset, steps), store=False, corpus=corpus)
        trainer.train_until(args.warmup_steps)
        t0 = time.perf_counter()
        trainer.train_until(args.warmup_steps + steps)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, trainer

    def paired(preset: str) -> tuple[float, float, Trainer]:
        """Interleave chunks of ``--chunk`` steps of the trainer and of the plain loop (ABBA order,
        so drift in machine load cancels) and return the median per-pair ratio and the fastest
        chunk's tokens/s of each side: adjacent chunks see the same load from other processes."""
        steps = args.repeats * args.steps
        trainer = Trainer(config(preset, steps), store=False, corpus=corpus)
        cfg = trainer.config
        model, _ = build_model(preset, vocab_size=corpus.vocab_size, seq_len=args.seq_len, seed=cfg.seed)
        model.to(trainer.device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
        sampler = MixtureSampler(corpus, cfg.resolve_mixture(corpus.domains, corpus.token_counts()),
                                 seq_len=args.seq_len, batch_size=args.batch_size, seed=cfg.seed)
        batches = [tuple(sampler.next_batch()[:2]) for _ in range(args.warmup_steps + steps)]
        trainer.train_until(args.warmup_steps)
        plain_loop(model, batches[: args.warmup_steps], opt, clip=1.0, device=trainer.device)
        pos = args.warmup_steps
        ratios, t_train, t_base = [], [], []
        for i in range(0, steps, args.chunk):
            k = min(args.chunk, steps - i)

            def run_trainer(k: int = k) -> float:
                t0 = time.perf_counter()
                trainer.train_until(trainer.step + k)
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                return time.perf_counter() - t0

            def run_base(k: int = k, pos: int = pos) -> float:
                return plain_loop(model, batches[pos : pos + k], opt, clip=1.0, device=trainer.device)

            if (i // args.chunk) % 2 == 0:
                a, b = run_trainer(), run_base()
            else:
                b, a = run_base(), run_trainer()
            pos += k
            t_train.append(a / k)
            t_base.append(b / k)
            ratios.append(b / a)
        tok = args.seq_len * args.batch_size
        print(f"{preset}: per-step seconds trainer {[round(t, 3) for t in t_train]} "
              f"plain {[round(t, 3) for t in t_base]}")
        return statistics.median(ratios), tok / min(t_train), tok / min(t_base), trainer

    ratio, train_tps, base_tps, trainer = paired(args.model)
    device = trainer.device
    print(f"{args.model}: plain loop {base_tps:,.0f} tok/s, trainer {train_tps:,.0f} tok/s on {device} "
          f"(seq_len {args.seq_len}, batch {args.batch_size}, {args.repeats} pairs of {args.steps} steps "
          f"in chunks of {args.chunk}); median paired ratio {ratio:.3f}")

    # evaluation throughput on the trainer's fixed validation batches
    trainer.evaluate()
    t0 = time.perf_counter()
    n_eval = 3
    for _ in range(n_eval):
        losses = trainer.evaluate()
    eval_sec = (time.perf_counter() - t0) / n_eval
    eval_tokens = sum(w.shape[0] * (w.shape[1] - 1) for w in trainer._windows.values())
    print(f"{args.model}: eval {eval_tokens / eval_sec:,.0f} tok/s ({eval_tokens} tokens over {len(losses)} domains)")
    fpt = trainer.flops_per_token
    if device.type == "cuda":
        print(f"{args.model}: MFU {train_tps * fpt / args.peak_flops:.1%} of {args.peak_flops:.3g} FLOP/s")

    for preset in [p for p in args.also.split(",") if p]:
        steps = max(5, args.steps // 4)
        sec, tr = trainer_seconds(preset, steps)
        tps = steps * args.seq_len * args.batch_size / sec
        line = f"{preset}: trainer {tps:,.0f} tok/s on {tr.device} ({steps} steps)"
        if tr.device.type == "cuda":
            line += f", MFU {tps * tr.flops_per_token / args.peak_flops:.1%}"
        print(line)

    print(f"train_ratio={ratio:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
