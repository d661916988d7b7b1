"""Group Influence cost against its physical floor, and the projected-gradient speed-up.

1. The full influence matrix (k training domains x k target domains, Adam preconditioner, standard
   errors) on a GPT, timed against the same number of plain forward+backward passes
   (``loss.backward()``) over the very same batches in the same process. Target: ratio <= 1.2.
2. At a ~10M-parameter GPT (the ``small-10m`` preset), the full matrix with and without a
   ``--projection-dim`` sketch: time ratio (speed-up) and the memory of the stored gradient vectors.

Both measurements take the fastest of ``--repeats`` runs, in rotating order (on a shared machine
other processes only ever add time, so the minimum is the least disturbed figure). The last line is
``influence_ratio=<full matrix time / forward+backward time>``.

    python bench/influence.py            # a few minutes on one free CPU core
    python bench/influence.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import time

import torch

from mixlab.influence import compute_group_influence, lm_loss
from mixlab.influence.batches import LMBatch
from mixlab.model import GPT, count_params, preset


def make_batches(
    k: int, n: int, batch_size: int, seq_len: int, vocab: int, seed: int
) -> dict[str, list[LMBatch]]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for d in range(k):
        hi = vocab // (d + 1)
        rows = [torch.randint(0, hi, (batch_size, seq_len + 1), generator=g) for _ in range(n)]
        out[f"domain{d}"] = [LMBatch(r[:, :-1].contiguous(), r[:, 1:].contiguous()) for r in rows]
    return out


def trained_model(
    name: str, vocab: int, seq_len: int, batches: dict[str, list[LMBatch]]
) -> tuple[GPT, torch.optim.Optimizer]:
    cfg = preset(name)
    cfg.vocab_size = vocab
    cfg.block_size = max(cfg.block_size, seq_len)
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for b in list(batches.values())[0][:2]:
        lm_loss(model, b).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt


def floor_pass(model: GPT, train: dict, target: dict) -> float:
    """Plain forward+backward over the same batches, in eval mode like the influence passes."""
    model.eval()
    t0 = time.perf_counter()
    for group in (target, train):
        for batches in group.values():
            for b in batches:
                lm_loss(model, b).backward()
                model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def influence_pass(
    model: GPT, opt: torch.optim.Optimizer, train: dict, target: dict, projection_dim: int | None = None
) -> float:
    t0 = time.perf_counter()
    compute_group_influence(
        model, train, target, preconditioner="adam", optimizer=opt, projection_dim=projection_dim
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-1m")
    ap.add_argument("--big-model", default="small-10m")
    ap.add_argument("--domains", type=int, default=4)
    ap.add_argument("--batches", type=int, default=4, help="batches per domain (training and target each)")
    ap.add_argument("--big-batches", type=int, default=1)
    ap.add_argument("--big-batch-size", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--projection-dim", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.model, args.big_model, args.batches, args.big_batches, args.repeats = (
            "nano-100k",
            "tiny-1m",
            3,
            1,
            1,
        )
    torch.set_num_threads(args.threads)

    train = make_batches(args.domains, args.batches, args.batch_size, args.seq_len, args.vocab, 1)
    target = make_batches(args.domains, args.batches, args.batch_size, args.seq_len, args.vocab, 2)
    model, opt = trained_model(args.model, args.vocab, args.seq_len, train)
    passes = 2 * args.domains * args.batches
    print(f"model {args.model}: {count_params(model):,} params; {args.domains} x {args.domains} matrix; "
          f"{passes} batches of {args.batch_size} x {args.seq_len} tokens")  # fmt: skip
    influence_pass(model, opt, train, target)
    floor_pass(model, train, target)
    t_inf, t_floor = [], []
    for r in range(args.repeats):
        for fn in (floor_pass, influence_pass)[:: 1 if r % 2 == 0 else -1]:
            if fn is floor_pass:
                t_floor.append(floor_pass(model, train, target))
            else:
                t_inf.append(influence_pass(model, opt, train, target))
    floor, infl = min(t_floor), min(t_inf)
    ratio = infl / floor
    print(f"forward+backward floor: {floor:.3f}s ({passes} passes); full influence matrix: {infl:.3f}s")

    btrain = make_batches(args.domains, args.big_batches, args.big_batch_size, args.seq_len, args.vocab, 3)
    btarget = make_batches(args.domains, args.big_batches, args.big_batch_size, args.seq_len, args.vocab, 4)
    big, bopt = trained_model(args.big_model, args.vocab, args.seq_len, btrain)
    p = count_params(big)
    influence_pass(big, bopt, btrain, btarget, args.projection_dim)
    runs = {
        "floor": lambda: floor_pass(big, btrain, btarget),
        "full": lambda: influence_pass(big, bopt, btrain, btarget),
        "projected": lambda: influence_pass(big, bopt, btrain, btarget, args.projection_dim),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.repeats):
        order = list(runs)[r % 3 :] + list(runs)[: r % 3]
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(runs[name]())
    full, proj, bfloor = (min(times[k]) for k in ("full", "projected", "floor"))
    k = args.domains
    stored = 2 * k + k * args.big_batches  # target means, training sums, per-batch target vectors
    print(f"model {args.big_model}: {p:,} params; projection to ~{args.projection_dim} dims")
    print(f"  floor {bfloor:.3f}s, full {full:.3f}s (ratio {full / bfloor:.3f}), projected {proj:.3f}s "
          f"(ratio {proj / bfloor:.3f}); projected speed-up {full / proj:.3f}x")  # fmt: skip
    print(f"  stored gradient vectors: {stored * p * 4 / 2**20:.1f} MiB full vs "
          f"{stored * args.projection_dim * 4 / 2**20:.2f} MiB projected ({p / args.projection_dim:.0f}x smaller)")  # fmt: skip
    print(f"projection_speedup={full / proj:.3f}")
    print(f"influence_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
