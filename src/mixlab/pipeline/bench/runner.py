"""Running the benchmark: each method's choice (stored and reused), its metered proxy runs, the
target runs on the paired seeds, the dynamic pipeline, the controls and the oracle row."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixlab.data import Corpus, builtin_corpus
from mixlab.data.targets import TargetSet, load_targets, parse_targets
from mixlab.errors import ConfigError, MixlabError
from mixlab.mixers import get_mixer, mixer_class
from mixlab.mixers.base import MixingContext, Proposal
from mixlab.mixture import Mixture, Schedule
from mixlab.pipeline.bench.config import BenchConfig, parse_method_spec, registry_name
from mixlab.pipeline.bench.scales import ScaleSpec
from mixlab.pipeline.bench.stats import add_deltas, summarise
from mixlab.pipeline.dynamic import PLAN_KEYS, PipelineConfig, run_pipeline
from mixlab.proxy import ComputeLedger, ProxyResult
from mixlab.report.bench_rows import AVG_STATIC_SUFFIX, NATURAL_THEN_UNIFORM_SUFFIX, BenchRow
from mixlab.store import default_workspace
from mixlab.train import LocalProxyRunner, TrainConfig, Trainer
from mixlab.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

CHOICE_VERSION = 2


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def corpus_fingerprint(corpus: Any) -> str:
    """A short hash of the corpus manifest (domains, token counts, sources, tokenizer)."""
    manifest = getattr(corpus, "manifest", None)
    if manifest is None:
        manifest = {"domains": list(corpus.domains), "counts": corpus.token_counts()}
    return digest(manifest)


def _workspace(config: BenchConfig) -> Path:
    return Path(config.workspace) if config.workspace else Path(default_workspace())


def open_corpus(path: str | None) -> Any:
    """Open the prepared corpus at ``path``, or prepare (once) and open the built-in corpus."""
    return Corpus.open(path) if path else builtin_corpus()


class MeteredProxy:
    """Wraps a :class:`~mixlab.mixers.base.ProxyRunner` and records what every proxy run cost.

    The bench uses it to make sure a method's proxy runs are counted even when the method forgets
    to add them to ``ctx.compute``.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.ledger = ComputeLedger()
        self.runs = 0

    def train(self, mixture: Mixture, **kwargs: Any) -> ProxyResult:
        result = self.runner.train(mixture, **kwargs)
        self.ledger.add(flops=result.flops, tokens=result.tokens, seconds=result.seconds)
        self.runs += 1
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)


def reconcile_compute(ctx_ledger: ComputeLedger, metered: ComputeLedger, wall_seconds: float) -> dict[str, float]:
    """The choosing compute to report: what the method recorded, topped up with proxy runs it did
    not record (a method that records them is never counted twice), and the wall time measured around
    ``propose`` (or the recorded seconds when reused proxy runs made the wall time shorter)."""
    flops = max(ctx_ledger.flops, metered.flops)
    tokens = max(ctx_ledger.tokens, metered.tokens)
    if metered.flops > ctx_ledger.flops * (1 + 1e-9):
        log.info("bench: the method did not record all its proxy runs; counting them from the proxy runner")
    return {"flops": float(flops), "tokens": int(tokens), "seconds": float(max(wall_seconds, metered.seconds))}



@dataclass
class BenchEnv:
    """Everything one benchmark's runs share: the resolved config and scale, the opened corpus, the
    workspace, and the track's objective (its keys and weights)."""

    config: BenchConfig
    scale: ScaleSpec
    corpus: Any
    corpus_path: str
    workspace: Path
    fingerprint: str
    domains: list[str]
    targets: list[str]
    """The track's objective keys: the target set's keys (target track) or the domains (balanced)."""
    weights: dict[str, float]
    """Weights c_j of ``targets`` (sum to one)."""
    target_set: TargetSet
    """The target set every target run evaluates (in both tracks)."""
    eval_specs: list[dict[str, Any]]
    """``target_set`` as TrainConfig ``targets`` (what target runs evaluate)."""

    @property
    def target_track(self) -> bool:
        return self.config.track == "target"

    def objective(self) -> dict[str, Any]:
        """What a choice depends on besides the method: track, keys, weights, target token counts."""
        return {"track": self.config.track, "keys": self.targets, "weights": self.weights,
                "set": self.target_set.describe() if self.target_track else None}


def _context(env: BenchEnv, compute: ComputeLedger, proxy: Any) -> MixingContext:
    fields = env.target_set.context_fields() if env.target_track else {"target_domains": list(env.domains)}
    return MixingContext(
        domains=list(env.domains),
        available_tokens=env.corpus.token_counts(),
        total_tokens=int(env.scale.target.tokens),
        max_epochs=env.config.max_epochs,
        seed=env.config.seed,
        corpus=env.corpus,
        proxy=proxy,
        compute=compute,
        device=env.config.device,
        **fields,
    )


def _method_params(env: BenchEnv, method: str) -> dict[str, Any]:
    """The scale's parameters of the method, under those its spec names (``tikmix-d[pareto=false]``)."""
    name, overrides = parse_method_spec(method)
    return dict(env.scale.methods.get(name, {})) | overrides


def _proxy_runner(env: BenchEnv, method: str, key: str) -> Any:
    """The method's own proxy runner, in a workspace named after the choice key: proxy runs are
    reused only by a re-run of the same choice, never across methods or settings."""
    p = env.scale.proxy
    kwargs: dict[str, Any] = {"eval_batches": p.eval_batches, "device": env.config.device}
    if env.target_track:  # proxies report the targets' losses, which the methods regress or fit
        kwargs["targets"] = env.eval_specs
    kwargs.update(env.scale.proxy_overrides.get(registry_name(method), {}))
    return LocalProxyRunner(
        env.corpus,
        model=p.model,
        seq_len=p.seq_len,
        batch_size=p.batch_size,
        lr=p.lr,
        workspace=env.workspace / "bench" / "proxies" / key,
        kind="proxy",
        method=method,
        progress=False,
        **kwargs,
    )


def _choice_path(env: BenchEnv, method: str, params: Mapping[str, Any]) -> Path:
    key = digest(
        {
            "v": CHOICE_VERSION,
            "method": method,
            "params": params,
            "proxy": env.scale.proxy.model_dump(),
            "proxy_overrides": env.scale.proxy_overrides.get(registry_name(method), {}),
            "target_tokens": env.scale.target.tokens,
            "corpus": env.fingerprint,
            "objective": env.objective(),
            "max_epochs": env.config.max_epochs,
            "seed": env.config.seed,
        }
    )
    return env.workspace / "bench" / "choices" / f"{registry_name(method)}-{key}.json"


def choose_static(env: BenchEnv, method: str) -> dict[str, Any]:
    """Run ``method``'s choosing procedure (or reuse its stored result): the mixture and its cost."""
    params = _method_params(env, method)
    path = _choice_path(env, method, params)
    if path.is_file():
        stored = read_json(path)
        log.info("bench: reusing the stored choice of %s (%s)", method, path.name)
        return stored
    mixer = get_mixer(registry_name(method), **params)
    proxy = MeteredProxy(_proxy_runner(env, method, path.stem))
    ctx = _context(env, ComputeLedger(), proxy)
    t0 = time.perf_counter()
    schedule = Proposal.of(mixer.propose(ctx), mixer=mixer).as_schedule()  # a static method may plan stages
    wall = time.perf_counter() - t0
    schedule.check_domains(env.domains)
    cost = reconcile_compute(ctx.compute, proxy.ledger, wall)
    choice = {
        "method": method,
        "params": params,
        "schedule": schedule.to_json(),
        "compute": cost,
        "proxy_runs": proxy.runs,
    }
    atomic_write_json(path, choice)
    log.info("bench: %s chose %s (%.3g FLOPs, %d proxy runs, %.1fs)", method, schedule.stages[0].mixture,
             cost["flops"], proxy.runs, cost["seconds"])
    return choice


def _target_run_settings(env: BenchEnv, seed: int) -> dict[str, Any]:
    """The training settings every target run shares, static or dynamic, so that both kinds train
    alike: the scale's model, tokens, batch shape, lr and warmup (when it sets one). A target run is
    evaluated only at its end (only the final losses are compared; evaluations would cost as much as
    training at these sizes) and checkpointed every quarter so a killed run resumes."""
    t = env.scale.target
    steps = max(1, t.tokens // (t.seq_len * t.batch_size))
    warmup = {} if t.warmup is None else {"warmup": t.warmup}
    return {
        "corpus": env.corpus_path,
        "model": t.model,
        "tokens": t.tokens,
        "seq_len": t.seq_len,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "eval_batches": t.eval_batches,
        "eval_interval": steps,
        "checkpoint_interval": max(1, steps // 4),
        **warmup,
        "seed": seed,
        "max_epochs": env.config.max_epochs,
        "on_exceed": "warn",
        "workspace": str(env.workspace),
        "device": env.config.device,
        "progress": env.config.progress,
    }


def train_target(env: BenchEnv, method: str, schedule: Schedule, seed: int) -> dict[str, Any]:
    """Train (or reuse) the target model on ``schedule`` with ``seed``; its final per-domain losses."""
    cfg = TrainConfig.parse(
        {
            **_target_run_settings(env, seed),
            "mixture": schedule,
            "kind": "bench-target",
            "method": method,
            "targets": env.eval_specs,
        },
        where=f"bench target run of {method}",
    )
    result = Trainer(cfg, corpus=env.corpus).fit()
    return {"run_id": result.run_id, "final": dict(result.final), "flops": result.flops, "tokens": result.tokens}


def _dynamic_run_name(env: BenchEnv, method: str, params: Mapping[str, Any], seed: int) -> str:
    """A run id unique to the method and its settings: the trainer's own id hashes the training
    config only, so TiKMiX-D and TiKMiX-M would otherwise share (and replay) one run directory."""
    key = digest({"method": method, "params": params, "target": env.scale.target.model_dump(),
                   "dynamic": env.scale.dynamic, "corpus": env.fingerprint, "objective": env.objective(),
                   "max_epochs": env.config.max_epochs, "seed": seed})
    return f"bench-{registry_name(method)}-s{seed}-{key[:12]}"


def _stage_plan(env: BenchEnv, method: str) -> dict[str, Any]:
    """The pipeline settings of a dynamic method: the scale's, under a variant's stage plan
    (``tikmix-d[stages=3,first_boundary=0.2]`` goes to the pipeline, not the mixer)."""
    params = _method_params(env, method)
    return dict(env.scale.dynamic) | {k: v for k, v in params.items() if k in PLAN_KEYS}


def run_dynamic(env: BenchEnv, method: str, seed: int) -> dict[str, Any]:
    """Run a dynamic method through the stage-by-stage pipeline (:mod:`mixlab.pipeline.dynamic`).

    A dynamic method re-chooses the mixture at every stage boundary of the *target* run, so its
    choosing compute (influence passes, surrogate fits) is spent inside that run: the pipeline trains
    the target stage by stage from the natural mixture (TiKMiX's first stage) and returns the
    schedule, the final per-domain losses and the choosing ledger. The pipeline resumes a killed run
    and replays recorded stage decisions, so a re-run reuses finished work.
    """
    params = _method_params(env, method)
    dyn = _stage_plan(env, method)
    cfg = PipelineConfig.parse(
        {
            "train": {
                **_target_run_settings(env, seed),
                "run_name": _dynamic_run_name(env, method, params, seed),
                **({} if env.target_track else {"targets": env.eval_specs}),
            },
            "mixer": registry_name(method),
            "mixer_params": {k: v for k, v in params.items() if k not in PLAN_KEYS},
            "initial": dyn.pop("initial", "natural"),
            "max_epochs": env.config.max_epochs,
            **({"targets": env.eval_specs} if env.target_track else {"target_domains": list(env.domains)}),
            **dyn,
        },
        where=f"bench pipeline of {method}",
    )
    res = run_pipeline(cfg, corpus=env.corpus)
    decided = sum(float(r.seconds or 0.0) for r in res.stages[1:])
    return {
        "run_id": res.run_id,
        "final": dict(res.final),
        "schedule": res.schedule.to_json(),
        "compute": {
            "flops": float(res.compute.flops),
            "tokens": int(res.compute.tokens),
            "seconds": float(max(res.compute.seconds, decided)),
        },
    }


def _seeds(env: BenchEnv) -> list[int]:
    return [env.config.seed + i for i in range(env.scale.seeds)]


def _row(env: BenchEnv, method: str, runs: list[dict[str, Any]], compute: Mapping[str, Any],
         schedule: list[dict[str, Any]], **extra: Any) -> BenchRow:
    """One result row from a method's per-seed runs (the deltas are filled in by :func:`add_deltas`)."""
    finals = [r["final"] for r in runs]
    stats = summarise(finals, env.targets, domains=env.domains, weights=env.weights)
    keys = [*env.domains, *(k for k in env.target_set.keys if k not in env.domains)]
    per_domain = {d: float(np.mean([f[d] for f in finals])) for d in keys if all(d in f for f in finals)}
    return BenchRow(
        method=method,
        **stats,
        choose_flops=float(compute["flops"]),
        choose_tokens=int(compute["tokens"]),
        choose_seconds=float(compute["seconds"]),
        seeds=len(runs),
        delta_vs_uniform=None,
        delta_vs_uniform_ci95=None,
        track=env.config.track,
        seed_list=_seeds(env)[: len(runs)],
        dynamic=extra.pop("dynamic", False),
        mixture=schedule[0]["mixture"] if len(schedule) == 1 else None,
        schedule=schedule,
        per_domain=per_domain,
        run_ids=[r["run_id"] for r in runs],
        **extra,
    )


def run_method(env: BenchEnv, method: str, on_event: Callable[[str], None] | None = None) -> BenchRow:
    """Choose (static) or run the pipeline (dynamic), train the seeds, summarise: one result row."""
    seeds = _seeds(env)
    note = on_event or (lambda msg: None)
    dynamic = mixer_class(registry_name(method)).dynamic
    if dynamic:
        runs = []
        for s in seeds:
            note(f"{method}: dynamic pipeline, seed {s}")
            runs.append(run_dynamic(env, method, s))
        compute = {
            "flops": float(np.mean([r["compute"]["flops"] for r in runs])),
            "tokens": int(np.mean([r["compute"]["tokens"] for r in runs])),
            "seconds": float(np.mean([r["compute"]["seconds"] for r in runs])),
        }
        return _row(env, method, runs, compute, runs[0]["schedule"], dynamic=True,
                    schedules=[r["schedule"] for r in runs])
    note(f"{method}: choosing")
    choice = choose_static(env, method)
    sched = Schedule.from_json(choice["schedule"])
    runs = []
    for s in seeds:
        note(f"{method}: target seed {s}")
        runs.append(train_target(env, method, sched, s))
    return _row(env, method, runs, choice["compute"], choice["schedule"])


def time_averaged(schedule: Schedule, total_steps: int) -> Mixture:
    """The mixture a schedule trains on on average: stage mixtures weighted by their steps."""
    starts = [st.start_step for st in schedule.stages] + [total_steps]
    weights = np.zeros(len(schedule.domains))
    for st, lo, hi in zip(schedule.stages, starts, starts[1:], strict=False):
        weights += max(hi - lo, 0) * st.mixture.to_array(schedule.domains)
    return Mixture.from_weights(weights, schedule.domains)


def run_controls(env: BenchEnv, row: BenchRow, on_event: Callable[[str], None] | None = None) -> list[BenchRow]:
    """The two controls of a dynamic method's row: per seed, (1) its schedule's time-averaged mixture
    trained statically and (2) natural for the first stage, then uniform, with the same boundaries."""
    note = on_event or (lambda msg: None)
    t = env.scale.target
    total = max(1, t.tokens // (t.seq_len * t.batch_size))
    method = row.method
    natural = Mixture.from_weights({d: float(env.corpus.token_counts()[d]) for d in env.domains})
    uniform = Mixture.uniform(env.domains)
    avg_runs, nu_runs, avg_sched, nu_sched = [], [], None, None
    # the pipeline's boundaries (a schedule whose stage kept the previous mixture lists fewer stages)
    plan = PipelineConfig.parse({"train": {}, **_stage_plan(env, method)}, where=f"bench stage plan of {method}")
    bounds = plan.boundary_steps(total)
    for s, sched_list in zip(_seeds(env), row.schedules or [], strict=True):
        sched = Schedule.from_json(sched_list)
        avg_sched = Schedule.constant(time_averaged(sched, total))
        nu_sched = Schedule.from_pairs([(0, natural), *((b, uniform) for b in bounds)])
        note(f"{method}: controls, seed {s}")
        avg_runs.append(train_target(env, f"{method}{AVG_STATIC_SUFFIX}", avg_sched, s))
        nu_runs.append(train_target(env, f"{method}{NATURAL_THEN_UNIFORM_SUFFIX}", nu_sched, s))
    assert avg_sched is not None and nu_sched is not None
    cost = {"flops": row.choose_flops, "tokens": row.choose_tokens, "seconds": row.choose_seconds}
    zero = {"flops": 0.0, "tokens": 0, "seconds": 0.0}
    return [
        _row(env, f"{method}{AVG_STATIC_SUFFIX}", avg_runs, cost, avg_sched.to_json(), control_of=method),
        _row(env, f"{method}{NATURAL_THEN_UNIFORM_SUFFIX}", nu_runs, zero, nu_sched.to_json(), control_of=method),
    ]


def oracle_candidates(domains: Sequence[str], natural: Mixture, n: int, *, seed: int = 0) -> list[Mixture]:
    """``n`` static mixtures the oracle chooses from: uniform, natural, one mixture tilted to each
    domain (60% on it, the rest equal), then seeded Dirichlet(1) draws."""
    k = len(domains)
    out = [Mixture.uniform(domains), natural]
    for i in range(k):
        w = np.full(k, 0.4 / max(k - 1, 1))
        w[i] = 0.6
        out.append(Mixture.from_weights(w, list(domains)))
    rng = np.random.default_rng([seed, 0x0AC1E])
    while len(out) < n:
        out.append(Mixture.from_weights(rng.dirichlet(np.ones(k)), list(domains)))
    return out[:n]


def run_oracle(
    env: BenchEnv, on_event: Callable[[str], None] | None = None, extra: Sequence[Mixture] = ()
) -> BenchRow:
    """The best of ``oracle_candidates`` static mixtures at target scale, plus the ``extra`` mixtures
    (the benchmarked static methods' choices), so the oracle is the best *known* static mixture.

    Every candidate is trained on a selection seed that is none of the paired seeds (so the pick's
    luck on its seed does not flatter it), the one with the lowest objective is trained on the paired
    seeds, and the choosing compute is the sum of the selection runs.
    """
    note = on_event or (lambda msg: None)
    natural = Mixture.from_weights({d: float(env.corpus.token_counts()[d]) for d in env.domains})
    cands = oracle_candidates(env.domains, natural, env.scale.oracle_candidates, seed=env.config.seed)
    seen = [c.to_array(env.domains) for c in cands]
    for m in extra:
        w = m.to_array(env.domains)
        if all(np.abs(w - v).max() > 1e-3 for v in seen):
            cands.append(m)
            seen.append(w)
    pick_seed = env.config.seed + 1000
    scores, flops, tokens, seconds = [], 0.0, 0, 0.0
    for i, m in enumerate(cands):
        note(f"oracle: candidate {i + 1}/{len(cands)}")
        t0 = time.perf_counter()
        r = train_target(env, "oracle", Schedule.constant(m), pick_seed)
        seconds += time.perf_counter() - t0
        flops += float(r["flops"])
        tokens += int(r["tokens"])
        scores.append(float(sum(env.weights[k] * r["final"][k] for k in env.targets)))
    best = cands[int(np.argmin(scores))]
    runs = []
    for s in _seeds(env):
        note(f"oracle: target seed {s}")
        runs.append(train_target(env, "oracle", Schedule.constant(best), s))
    return _row(env, "oracle", runs, {"flops": flops, "tokens": tokens, "seconds": seconds},
                Schedule.constant(best).to_json(), oracle_scores=scores,
                oracle_candidates=[c.to_dict() for c in cands])


def prepare_env(config: BenchConfig, corpus: Any = None) -> tuple[BenchEnv, list[str]]:
    """The benchmark's environment (scale, corpus, workspace, target set) and its method list, as
    :func:`run_bench` sets them up; with it, :func:`train_target` trains any schedule at target scale
    into the same workspace (e.g. a control of one's own, ``experiments/plan_ceiling.py``)."""
    scale, methods = config.resolved()
    if corpus is None:
        corpus = open_corpus(config.corpus)
    root = getattr(corpus, "root", None) or config.corpus
    if root is None:
        raise ConfigError("bench: the corpus has no directory on disk; prepare it with `mixlab prepare`")
    domains = list(corpus.domains)
    unknown = [d for d in (config.target_domains or []) if d not in domains]
    if unknown:
        raise ConfigError(f"bench: target domain(s) {unknown} are not in the corpus {domains}")
    workspace = _workspace(config)
    tset = load_targets(corpus, config.target_specs())
    if config.track == "target":
        keys, weights = tset.keys, tset.weights
    else:
        keys, weights = domains, {d: 1.0 / len(domains) for d in domains}
    env = BenchEnv(
        config=config,
        scale=scale,
        corpus=corpus,
        corpus_path=str(Path(root).resolve()),
        workspace=workspace,
        fingerprint=corpus_fingerprint(corpus),
        domains=domains,
        targets=list(keys),
        weights=dict(weights),
        target_set=tset,
        eval_specs=_spec_dicts(config.target_specs()),
    )
    return env, methods


def _spec_dicts(specs: Sequence[Any]) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_defaults=True) for t in parse_targets(list(specs), "bench targets")]


def run_bench(
    config: BenchConfig,
    *,
    corpus: Any = None,
    on_event: Callable[[str], None] | None = None,
    on_method: Callable[[str, BenchRow | None, str | None], None] | None = None,
    summary: dict[str, Any] | None = None,
) -> list[BenchRow]:
    """Run the benchmark; one :class:`~mixlab.report.bench_rows.BenchRow` per method that ran, then
    the controls of dynamic methods and the ``oracle`` row (when the scale asks for them).

    ``corpus`` may be an opened corpus (else ``config.corpus`` or the built-in corpus is opened).
    ``on_method(name, row, error)`` is called as each method finishes; a method that fails with a
    :class:`MixlabError` (or is not available in this installation) is logged and skipped, so one
    broken method does not cost the others' results. All methods failing raises. ``summary``, when
    given, receives the track's headroom (see :func:`add_deltas`).
    """
    env, methods = prepare_env(config, corpus)
    rows: list[BenchRow] = []
    errors: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ModuleNotFoundError as exc:
            msg = f"not available in this installation ({exc.name} is missing)"
            log.warning("bench: skipping %s: %s", name, msg)
        except MixlabError as exc:
            msg = str(exc)
            log.error("bench: %s failed: %s", name, exc)
        errors[name] = msg
        if on_method:
            on_method(name, None, msg)
        return None

    for method in methods:
        row = attempt(method, lambda method=method: run_method(env, method, on_event))
        if row is None:
            continue
        rows.append(row)
        if on_method:
            on_method(method, row, None)
        if row.dynamic and env.scale.controls:
            for ctl in attempt(f"{method} controls", lambda row=row: run_controls(env, row, on_event)) or []:
                rows.append(ctl)
                if on_method:
                    on_method(ctl.method, ctl, None)
    if not rows:
        detail = "; ".join(f"{m}: {e}" for m, e in errors.items())
        raise MixlabError(f"bench: no method finished ({detail})")
    if env.scale.oracle_candidates > 0:
        picks = [Mixture(r.mixture) for r in rows if r.mixture and not r.dynamic and r.control_of is None]
        row = attempt("oracle", lambda: run_oracle(env, on_event, picks))
        if row is not None:
            rows.append(row)
            if on_method:
                on_method("oracle", row, None)
    info = add_deltas(rows)
    if summary is not None:
        summary.update(info, targets=env.target_set.describe() if env.target_track else None,
                       objective_keys=env.targets)
    return rows

