"""The ceiling of a dynamic plan: how close can a method that first trains its initial mixture get
to the best static mixture, if every decision were perfect?

A dynamic method (TiKMiX-D/-M) trains its initial mixture (``natural``, or ``uniform`` for the
mirror variant) until its first stage boundary and only then chooses. The best it could possibly
choose at that boundary is, to a first approximation, the best known static mixture (the oracle's
pick of ``mixlab bench``). This script trains, on the bench's paired seeds and target scale, the
schedule "initial mixture until the boundary, then the best static mixture" for each boundary asked
for, next to the best static mixture trained from step 0, and prints the paired per-seed difference
with its 95% interval. A positive gap is what the plan itself costs, before any choice is made: a
method bound to that plan cannot beat the static optimum by more than its dynamic part recovers.

    python experiments/plan_ceiling.py --bench bench.json            # the oracle's pick of a bench run
    python experiments/plan_ceiling.py --bench bench.json --initial natural --boundaries 0.5

Runs go to the bench's workspace (``--workspace``, the same as ``mixlab bench``'s, so the oracle's
runs are reused). The last line is ``plan_ceiling_gap=<mean gap at the first boundary>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mixlab.mixture import Mixture, Schedule
from mixlab.pipeline.bench import BenchConfig, paired_delta, prepare_env, train_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, required=True, help="a bench.json with an oracle row")
    ap.add_argument("--workspace", default=None, help="the bench's workspace (default: mixlab's)")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--seed", type=int, default=0, help="the bench's base seed")
    ap.add_argument("--target", action="append", default=None, help="the bench's --target (repeatable)")
    ap.add_argument("--initial", default="uniform", choices=["uniform", "natural"])
    ap.add_argument("--boundaries", type=float, nargs="+", default=[0.25, 0.5], help="fractions of the run")
    args = ap.parse_args()

    rows = json.loads(args.bench.read_text())
    oracle = next((r for r in rows if r.get("method") == "oracle"), None)
    if oracle is None or not oracle.get("mixture"):
        raise SystemExit(f"{args.bench}: no oracle row with a mixture (run mixlab bench with an oracle)")
    config = BenchConfig(scale=args.scale, seed=args.seed, workspace=args.workspace, targets=args.target,
                         methods=["uniform"])  # fmt: skip
    env, _ = prepare_env(config)
    best = Mixture.from_weights(oracle["mixture"])
    initial = Mixture.uniform(env.domains) if args.initial == "uniform" else Mixture.from_weights(
        {d: float(env.corpus.token_counts()[d]) for d in env.domains})  # fmt: skip
    t = env.scale.target
    total = max(1, t.tokens // (t.seq_len * t.batch_size))
    seeds = [args.seed + i for i in range(env.scale.seeds)]

    def losses(method: str, schedule: Schedule) -> list[float]:
        out = []
        for s in seeds:
            final = train_target(env, method, schedule, s)["final"]
            out.append(float(sum(env.weights[k] * final[k] for k in env.targets)))
        return out

    static = losses("oracle", Schedule.constant(best))  # the oracle row's own runs, reused
    print(f"best static mixture {best}: {np.mean(static):.4f} (per seed {np.round(static, 4).tolist()})")
    gaps = []
    for frac in args.boundaries:
        step = max(1, round(frac * total))
        plan = Schedule.from_pairs([(0, initial), (step, best)])
        got = losses(f"ceiling:{args.initial}-then-oracle@{step}", plan)
        gap, ci = paired_delta(got, static)
        gaps.append(gap)
        print(f"{args.initial} until step {step}/{total}, then the best static mixture: {np.mean(got):.4f} "
              f"(per seed {np.round(got, 4).tolist()}); minus best static {gap:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]")
    print(f"plan_ceiling_gap={gaps[0]:.4f}")


if __name__ == "__main__":
    main()
