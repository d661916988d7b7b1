"""The end-to-end benchmark behind ``mixlab bench``: which method gives the best model for the compute?

For every selected method the benchmark

1. runs the method's whole choosing procedure on the corpus: a :class:`MixingContext` with a fresh
   :class:`ComputeLedger` and a :class:`~mixlab.train.LocalProxyRunner` of the scale's proxy size
   (each method gets its own proxy workspace, so no method is handed another's proxy runs for free);
2. trains a *target* model (a bigger preset, a fixed token budget) on the chosen mixture with
   ``seeds`` seeds (:class:`~mixlab.train.Trainer`); dynamic methods (``mixer.dynamic``: TiKMiX-D/-M)
   instead run the stage-by-stage pipeline (:func:`mixlab.pipeline.dynamic.run_pipeline`), which
   trains the target itself and re-chooses the mixture at every stage boundary;
3. reports per method the average validation loss over domains, the worst domain's loss and the
   track's objective ``target_loss`` (each the mean over seeds, with ``<key>_std``), the compute spent
   choosing (FLOPs, proxy tokens, wall seconds), and the paired difference to uniform.

Two tracks. ``target`` (the default): the objective is the weighted loss of a target set that is not
trained on (``mixlab.data.targets``; by default the built-in ``builtin:pydoc``), the setting in which
choosing a mixture matters most. ``balanced``: the mean validation loss over the training domains
(DoReMi's setting), where uniform is close to optimal by construction. Target runs evaluate the target
set in both tracks, so target-agnostic methods' runs are shared between them.

Paired seeds: every row trains the same seeds; ``delta_vs_uniform`` is the mean over seeds of the
per-seed difference of ``target_loss`` to uniform's, ``delta_vs_uniform_ci95`` its 95% t-interval.
The ``oracle`` row is the best of ``oracle_candidates`` generic static mixtures and the static methods'
choices, each trained at target scale on a separate selection seed (its choosing compute is all those
runs), then trained on the paired seeds;
``headroom`` (uniform minus oracle) is also given in seed standard deviations: a track whose headroom
is under 5 SD cannot rank methods. Controls for each dynamic method: its schedule's time-averaged
mixture trained statically (``<method>:avg-static``) and the schedule natural-then-uniform with the
same boundaries (``<method>:natural-then-uniform``), which separate the dynamic part from the mixture.

Every stage is resumable: a method's choice is stored (atomically) under
``<workspace>/bench/choices/`` keyed by everything that determines it, and target runs are ordinary
trainer runs keyed by their config hash, so a re-run reuses what finished and resumes what did not.

Scales (``tiny``, ``default``, ``gpu``) are a YAML data file next to this module.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from mixlab.data.targets import DEFAULT_TARGET, TargetSet, load_targets
from mixlab.errors import ConfigError, MixlabError
from mixlab.mixers import REGISTRY, get_mixer, mixer_class
from mixlab.mixers.base import MixingContext
from mixlab.mixture import Mixture, Schedule
from mixlab.pipeline.dynamic import PLAN_KEYS, PipelineConfig, run_pipeline
from mixlab.proxy import ComputeLedger, ProxyResult
from mixlab.utils.config import parse_config
from mixlab.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = (
    "uniform",
    "natural",
    "unimax",
    "doremi",
    "regmix",
    "bimix",
    "bimix-entropy-ce",
    "tikmix-d",
    "tikmix-m",
)
"""What ``mixlab bench`` runs when no ``--methods`` are given."""

RESULT_KEYS: tuple[str, ...] = (
    "method",
    "avg_loss",
    "avg_loss_std",
    "worst_loss",
    "worst_loss_std",
    "target_loss",
    "target_loss_std",
    "choose_flops",
    "choose_tokens",
    "choose_seconds",
    "seeds",
    "delta_vs_uniform",
    "delta_vs_uniform_ci95",
)
"""The keys every result object carries (the issue's list); rows also hold details after these."""

CHOICE_VERSION = 2

TRACKS = ("target", "balanced")
"""``target``: the weighted loss of the target set; ``balanced``: the mean over training domains."""

HEADROOM_MIN_SD = 5.0
"""Below this many seed SDs of headroom a track's table cannot rank methods; the CLI says so loudly."""

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$")


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"tikmix-d[pareto=false,gamma=0.5]"`` -> ``("tikmix-d", {"pareto": False, "gamma": 0.5})``.

    A variant of a method is benchmarked as its own row under the full spec; values are read as YAML
    scalars (numbers, true/false, strings).
    """
    m = _SPEC.match(spec)
    if not m:
        raise ConfigError(f"bench: cannot read method {spec!r}; write NAME or NAME[key=value,...]")
    name, inner = m.group(1), m.group(2)
    params: dict[str, Any] = {}
    for item in (inner or "").split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"bench: method {spec!r}: {item.strip()!r} is not key=value")
        params[key.strip()] = yaml.safe_load(value.strip())
    return name, params


def _registry_name(spec: str) -> str:
    """The method a spec runs: ``"tikmix-d"`` for ``"tikmix-d[pareto=false]"``."""
    return parse_method_spec(spec)[0]


def split_methods(text: str) -> list[str]:
    """Split a comma-separated method list, keeping commas inside ``[...]`` with their method."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i.strip() for i in items if i.strip()]


# ----------------------------------------------------------------------------- configuration
class ModelSettings(BaseModel):
    """How one kind of model (proxy or target) is trained in a bench scale."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """GPT preset name (``mixlab.model.list_presets()``)."""
    seq_len: int = Field(128, ge=8)
    """Tokens per training sequence."""
    batch_size: int = Field(16, ge=1)
    """Sequences per optimizer step."""
    tokens: int = Field(..., gt=0)
    """Training tokens per run."""
    lr: float = Field(2e-3, gt=0)
    """Peak AdamW learning rate (warmup then cosine decay)."""
    eval_batches: int = Field(4, ge=1)
    """Validation batches per domain at each evaluation."""


class ScaleSpec(BaseModel):
    """One named size of the benchmark (an entry of ``bench_scales.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    """One line shown in ``mixlab bench --help``."""
    seeds: int = Field(3, ge=1)
    """Target runs per method (seeds 0..seeds-1 offset by the bench seed)."""
    proxy: ModelSettings
    """Proxy models trained by methods while choosing."""
    target: ModelSettings
    """The model each chosen mixture is judged by."""
    dynamic: dict[str, Any] = Field(default_factory=dict)
    """Extra settings for the dynamic pipeline (e.g. ``stages``)."""
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method parameters for ``get_mixer(name, **params)``."""
    proxy_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method extra :class:`~mixlab.train.LocalProxyRunner` keywords (e.g. ``eval_interval``)."""
    oracle_candidates: int = Field(0, ge=0)
    """Static mixtures the oracle row chooses from (0 = no oracle row)."""
    controls: bool = False
    """Add the two control rows of every dynamic method."""


@cache
def _scales() -> dict[str, dict[str, Any]]:
    text = resources.files("mixlab.pipeline").joinpath("bench_scales.yaml").read_text()
    return {str(k): dict(v) for k, v in yaml.safe_load(text).items()}


def list_scales() -> dict[str, str]:
    """Scale name -> description."""
    return {k: str(v.get("description", "")) for k, v in _scales().items()}


def load_scale(name: str) -> ScaleSpec:
    """The :class:`ScaleSpec` named ``name`` (``tiny``, ``default``, ``gpu``)."""
    scales = _scales()
    if name not in scales:
        raise ConfigError(f"unknown bench scale {name!r}; choose one of {sorted(scales)}")
    return parse_config(ScaleSpec, scales[name], f"bench_scales.yaml: scale {name!r}")


class BenchConfig(BaseModel):
    """Settings of one benchmark; anything left ``None`` comes from the scale."""

    model_config = ConfigDict(extra="forbid")

    corpus: str | None = None
    """Prepared corpus directory (``mixlab prepare``); None = the built-in corpus."""
    methods: list[str] | None = None
    """Methods to compare (registry names); None = :data:`DEFAULT_METHODS`."""
    scale: str = "default"
    """Named size from ``bench_scales.yaml``: ``tiny``, ``default`` or ``gpu``."""
    seeds: int | None = Field(None, ge=1)
    """Target runs per method (overrides the scale)."""
    seed: int = 0
    """Base seed: method choices use it, target runs use ``seed .. seed + seeds - 1``."""
    target_model: str | None = None
    """Target model preset (overrides the scale)."""
    target_tokens: int | None = Field(None, gt=0)
    """Target token budget per run (overrides the scale)."""
    proxy_model: str | None = None
    """Proxy model preset (overrides the scale)."""
    proxy_tokens: int | None = Field(None, gt=0)
    """Tokens per proxy run (overrides the scale)."""
    track: Literal["target", "balanced"] = "target"
    """``target``: ``target_loss`` is the weighted loss of ``targets``; ``balanced``: the mean over domains."""
    targets: list[str | dict[str, Any]] | None = None
    """The target set (``PATH[=WEIGHT]``, ``builtin:pydoc``, ``domain:NAME`` or mappings); None =
    ``target_domains`` when given, else the built-in target. Evaluated in every target run."""
    target_domains: list[str] | None = None
    """Target track: training domains (validation splits, equal weights) as the target set."""
    oracle_candidates: int | None = Field(None, ge=0)
    """Static mixtures the oracle chooses from (overrides the scale; 0 = no oracle row)."""
    controls: bool | None = None
    """Control rows for dynamic methods (overrides the scale)."""
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method parameter overrides, merged over the scale's."""
    max_epochs: float | None = Field(None, gt=0)
    """Availability cap given to methods and target runs (passes over a domain); None = no cap."""
    workspace: str | None = None
    """Workspace for the run store, proxy and target runs (default: mixlab's default workspace)."""
    device: str = "auto"
    """Torch device for every run: ``auto``, ``cpu``, ``cuda``."""
    progress: bool = False
    """Show the trainers' progress bars."""

    def resolved(self) -> tuple[ScaleSpec, list[str]]:
        """The effective scale (with this config's overrides applied) and method list."""
        spec = load_scale(self.scale)
        upd_p: dict[str, Any] = {}
        upd_t: dict[str, Any] = {}
        if self.proxy_model:
            upd_p["model"] = self.proxy_model
        if self.proxy_tokens:
            upd_p["tokens"] = self.proxy_tokens
        if self.target_model:
            upd_t["model"] = self.target_model
        if self.target_tokens:
            upd_t["tokens"] = self.target_tokens
        methods_params = {k: dict(v) for k, v in spec.methods.items()}
        for name, params in self.method_params.items():
            methods_params.setdefault(name, {}).update(params)
        spec = spec.model_copy(
            update={
                "proxy": spec.proxy.model_copy(update=upd_p),
                "target": spec.target.model_copy(update=upd_t),
                "seeds": self.seeds or spec.seeds,
                "methods": methods_params,
                "oracle_candidates": spec.oracle_candidates if self.oracle_candidates is None
                else self.oracle_candidates,
                "controls": spec.controls if self.controls is None else self.controls,
            }
        )
        methods = list(self.methods) if self.methods else list(DEFAULT_METHODS)
        if "uniform" not in methods:  # every row is paired against uniform
            methods.insert(0, "uniform")
        unknown = [m for m in methods if _registry_name(m) not in REGISTRY]
        if unknown:
            raise ConfigError(f"bench: unknown method(s) {unknown}; choose from {sorted(REGISTRY)}")
        if len(set(methods)) != len(methods):
            raise ConfigError(f"bench: a method is listed twice in {methods}")
        if self.targets and self.target_domains:
            raise ConfigError("bench: give targets or target_domains, not both")
        return spec, methods

    def target_specs(self) -> list[Any]:
        """The target set evaluated in every target run (the target track's objective)."""
        if self.targets:
            return list(self.targets)
        if self.target_domains:
            return [f"domain:{d}" for d in self.target_domains]
        return [DEFAULT_TARGET]


# ----------------------------------------------------------------------------- helpers
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def corpus_fingerprint(corpus: Any) -> str:
    """A short hash of the corpus manifest (domains, token counts, sources, tokenizer)."""
    manifest = getattr(corpus, "manifest", None)
    if manifest is None:
        manifest = {"domains": list(corpus.domains), "counts": corpus.token_counts()}
    return _digest(manifest)


def _workspace(config: BenchConfig) -> Path:
    if config.workspace:
        return Path(config.workspace)
    from mixlab.store import default_workspace

    return Path(default_workspace())


def open_corpus(path: str | None) -> Any:
    """Open the prepared corpus at ``path``, or prepare (once) and open the built-in corpus."""
    if path:
        from mixlab.data import Corpus

        return Corpus.open(path)
    try:
        from mixlab.data import builtin_corpus
    except ImportError:
        raise MixlabError(
            "this installation has no built-in corpus yet; pass --corpus DIR (a corpus from `mixlab prepare`)"
        ) from None
    return builtin_corpus()


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


def summarise(
    finals: Sequence[Mapping[str, float]],
    target_domains: Sequence[str],
    *,
    domains: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Mean and std over seeds of the average, worst and target validation losses.

    Per seed: ``avg`` = mean over ``domains`` (default: every key of the seed's losses), ``worst`` =
    max over them, ``target`` = ``sum_j c_j L_j`` over ``target_domains`` with ``weights`` c (default
    equal). Std is the population std (0 for a single seed). ``target_per_seed`` lists the per-seed
    targets (the paired differences are taken from it).
    """
    if not finals:
        raise MixlabError("bench: no finished target run to summarise")
    c = dict(weights) if weights else {d: 1.0 / len(target_domains) for d in target_domains}
    per: dict[str, list[float]] = {"avg_loss": [], "worst_loss": [], "target_loss": []}
    for final in finals:
        missing = [d for d in target_domains if d not in final]
        if missing:
            raise MixlabError(f"bench: target(s) {missing} were not evaluated (have {sorted(final)})")
        keys = list(domains) if domains is not None else list(final)
        vals = np.array([final[d] for d in keys], dtype=float)
        per["avg_loss"].append(float(vals.mean()))
        per["worst_loss"].append(float(vals.max()))
        per["target_loss"].append(float(sum(c[d] * final[d] for d in target_domains)))
    out: dict[str, Any] = {}
    for key, xs in per.items():
        arr = np.array(xs)
        out[key] = float(arr.mean())
        out[f"{key}_std"] = float(arr.std())
    out["target_per_seed"] = per["target_loss"]
    return out


def paired_delta(values: Sequence[float], baseline: Sequence[float]) -> tuple[float, list[float]]:
    """Mean per-seed difference ``values - baseline`` and its two-sided 95% t-interval.

    The seeds are paired (the same seed's runs differ only in the mixture), so the interval is
    ``mean ± t_{0.975, n-1} * sd(diff) / sqrt(n)``; with one seed it is ``[nan, nan]``.
    """
    from scipy import stats

    d = np.asarray(values, float) - np.asarray(baseline, float)
    if d.ndim != 1 or d.size == 0:
        raise MixlabError("bench: paired differences need the same, non-empty list of seeds")
    mean = float(d.mean())
    if d.size < 2:
        return mean, [math.nan, math.nan]
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, [mean - half, mean + half]


def headroom(uniform: Sequence[float], oracle: Sequence[float]) -> dict[str, float]:
    """Uniform minus oracle (mean over seeds) and the same in seed standard deviations.

    The seed SD is the pooled sample SD of the two rows' per-seed losses,
    ``sqrt((sd_u^2 + sd_o^2) / 2)`` (ddof 1): how much one seed's loss scatters around its mixture's
    mean. ``headroom_sd`` is infinite when both rows have no scatter and the gap is positive.
    """
    u, o = np.asarray(uniform, float), np.asarray(oracle, float)
    gap = float(u.mean() - o.mean())
    sd = float(math.sqrt((u.std(ddof=1) ** 2 + o.std(ddof=1) ** 2) / 2)) if min(u.size, o.size) > 1 else math.nan
    if sd == 0:
        ratio = math.inf if gap > 0 else 0.0
    else:
        ratio = gap / sd if math.isfinite(sd) else math.nan
    return {"headroom": gap, "seed_sd": sd, "headroom_sd": ratio}


# ----------------------------------------------------------------------------- the benchmark
@dataclass
class _Env:
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


def _context(env: _Env, compute: ComputeLedger, proxy: Any) -> MixingContext:
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
        **fields,
    )


def _method_params(env: _Env, method: str) -> dict[str, Any]:
    """The scale's parameters of the method, under those its spec names (``tikmix-d[pareto=false]``)."""
    name, overrides = parse_method_spec(method)
    params = dict(env.scale.methods.get(name, {})) | overrides
    if name == "doremi":
        params.setdefault("device", env.config.device)
    return params


def _proxy_runner(env: _Env, method: str, key: str) -> Any:
    """The method's own proxy runner, in a workspace named after the choice key: proxy runs are
    reused only by a re-run of the same choice, never across methods or settings."""
    from mixlab.train import LocalProxyRunner

    p = env.scale.proxy
    kwargs: dict[str, Any] = {"eval_batches": p.eval_batches, "device": env.config.device}
    if env.target_track:  # proxies report the targets' losses, which the methods regress or fit
        kwargs["targets"] = env.eval_specs
    kwargs.update(env.scale.proxy_overrides.get(_registry_name(method), {}))
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


def _choice_path(env: _Env, method: str, params: Mapping[str, Any]) -> Path:
    key = _digest(
        {
            "v": CHOICE_VERSION,
            "method": method,
            "params": params,
            "proxy": env.scale.proxy.model_dump(),
            "proxy_overrides": env.scale.proxy_overrides.get(_registry_name(method), {}),
            "target_tokens": env.scale.target.tokens,
            "corpus": env.fingerprint,
            "objective": env.objective(),
            "max_epochs": env.config.max_epochs,
            "seed": env.config.seed,
        }
    )
    return env.workspace / "bench" / "choices" / f"{_registry_name(method)}-{key}.json"


def choose_static(env: _Env, method: str) -> dict[str, Any]:
    """Run ``method``'s choosing procedure (or reuse its stored result): the mixture and its cost."""
    params = _method_params(env, method)
    path = _choice_path(env, method, params)
    if path.is_file():
        stored = read_json(path)
        log.info("bench: reusing the stored choice of %s (%s)", method, path.name)
        return stored
    mixer = get_mixer(_registry_name(method), **params)
    proxy = MeteredProxy(_proxy_runner(env, method, path.stem))
    ctx = _context(env, ComputeLedger(), proxy)
    t0 = time.perf_counter()
    mixture = mixer.propose(ctx)
    wall = time.perf_counter() - t0
    if isinstance(mixture, Schedule):  # a static method may still hand back a schedule
        schedule = mixture
    else:
        schedule = Schedule.constant(mixture)
    schedule.check_domains(env.domains)
    cost = reconcile_compute(ctx.compute, proxy.ledger, wall)
    choice = {
        "method": method,
        "params": params,
        "schedule": schedule.to_list(),
        "compute": cost,
        "proxy_runs": proxy.runs,
    }
    atomic_write_json(path, choice)
    log.info("bench: %s chose %s (%.3g FLOPs, %d proxy runs, %.1fs)", method, schedule.stages[0].mixture,
             cost["flops"], proxy.runs, cost["seconds"])
    return choice


def _target_intervals(t: ModelSettings) -> dict[str, int]:
    """Evaluate a target run only at its end (only the final losses are compared; evaluations would
    cost as much as training at these sizes), checkpoint it every quarter so a killed run resumes."""
    steps = max(1, t.tokens // (t.seq_len * t.batch_size))
    return {"eval_interval": steps, "checkpoint_interval": max(1, steps // 4)}


def train_target(env: _Env, method: str, schedule: Schedule, seed: int) -> dict[str, Any]:
    """Train (or reuse) the target model on ``schedule`` with ``seed``; its final per-domain losses."""
    from mixlab.train import TrainConfig, Trainer

    t = env.scale.target
    cfg = TrainConfig.parse(
        {
            "corpus": env.corpus_path,
            "model": t.model,
            "mixture": schedule.to_list() if len(schedule.stages) > 1 else schedule.stages[0].mixture.to_dict(),
            "tokens": t.tokens,
            "seq_len": t.seq_len,
            "batch_size": t.batch_size,
            "lr": t.lr,
            "eval_batches": t.eval_batches,
            **_target_intervals(t),
            "seed": seed,
            "max_epochs": env.config.max_epochs,
            "on_exceed": "warn",
            "workspace": str(env.workspace),
            "kind": "bench-target",
            "method": method,
            "device": env.config.device,
            "progress": env.config.progress,
            "targets": env.eval_specs,
        },
        where=f"bench target run of {method}",
    )
    result = Trainer(cfg, corpus=env.corpus).fit()
    return {"run_id": result.run_id, "final": dict(result.final), "flops": result.flops, "tokens": result.tokens}


def _dynamic_run_name(env: _Env, method: str, params: Mapping[str, Any], seed: int) -> str:
    """A run id unique to the method and its settings: the trainer's own id hashes the training
    config only, so TiKMiX-D and TiKMiX-M would otherwise share (and replay) one run directory."""
    key = _digest({"method": method, "params": params, "target": env.scale.target.model_dump(),
                   "dynamic": env.scale.dynamic, "corpus": env.fingerprint, "objective": env.objective(),
                   "max_epochs": env.config.max_epochs, "seed": seed})
    return f"bench-{_registry_name(method)}-s{seed}-{key[:12]}"


def _stage_plan(env: _Env, method: str) -> dict[str, Any]:
    """The pipeline settings of a dynamic method: the scale's, under a variant's stage plan
    (``tikmix-d[stages=3,first_boundary=0.2]`` goes to the pipeline, not the mixer)."""
    params = _method_params(env, method)
    return dict(env.scale.dynamic) | {k: v for k, v in params.items() if k in PLAN_KEYS}


def run_dynamic(env: _Env, method: str, seed: int) -> dict[str, Any]:
    """Run a dynamic method through the stage-by-stage pipeline (:mod:`mixlab.pipeline.dynamic`).

    A dynamic method re-chooses the mixture at every stage boundary of the *target* run, so its
    choosing compute (influence passes, surrogate fits) is spent inside that run: the pipeline trains
    the target stage by stage from the natural mixture (TiKMiX's first stage) and returns the
    schedule, the final per-domain losses and the choosing ledger. The pipeline resumes a killed run
    and replays recorded stage decisions, so a re-run reuses finished work.
    """
    t = env.scale.target
    params = _method_params(env, method)
    dyn = _stage_plan(env, method)
    cfg = PipelineConfig.parse(
        {
            "train": {
                "corpus": env.corpus_path,
                "model": t.model,
                "tokens": t.tokens,
                "seq_len": t.seq_len,
                "batch_size": t.batch_size,
                "lr": t.lr,
                "eval_batches": t.eval_batches,
                **_target_intervals(t),
                "seed": seed,
                "max_epochs": env.config.max_epochs,
                "on_exceed": "warn",
                "workspace": str(env.workspace),
                "run_name": _dynamic_run_name(env, method, params, seed),
                "device": env.config.device,
                "progress": env.config.progress,
                **({} if env.target_track else {"targets": env.eval_specs}),
            },
            "mixer": _registry_name(method),
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
        "schedule": res.schedule.to_list(),
        "compute": {
            "flops": float(res.compute.flops),
            "tokens": int(res.compute.tokens),
            "seconds": float(max(res.compute.seconds, decided)),
        },
    }


def _seeds(env: _Env) -> list[int]:
    return [env.config.seed + i for i in range(env.scale.seeds)]


def _row(env: _Env, method: str, runs: list[dict[str, Any]], compute: Mapping[str, Any],
         schedule: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One result row from a method's per-seed runs (RESULT_KEYS first; deltas filled in later)."""
    finals = [r["final"] for r in runs]
    row: dict[str, Any] = {"method": method}
    stats = summarise(finals, env.targets, domains=env.domains, weights=env.weights)
    per_seed = stats.pop("target_per_seed")
    row.update(stats)
    row.update(
        choose_flops=float(compute["flops"]),
        choose_tokens=int(compute["tokens"]),
        choose_seconds=float(compute["seconds"]),
        seeds=len(runs),
        delta_vs_uniform=None,
        delta_vs_uniform_ci95=None,
    )
    keys = [*env.domains, *(k for k in env.target_set.keys if k not in env.domains)]
    per_domain = {d: float(np.mean([f[d] for f in finals])) for d in keys if all(d in f for f in finals)}
    row.update(
        track=env.config.track,
        target_per_seed=per_seed,
        seed_list=_seeds(env)[: len(runs)],
        dynamic=False,
        mixture=schedule[0]["mixture"] if len(schedule) == 1 else None,
        schedule=schedule,
        per_domain=per_domain,
        run_ids=[r["run_id"] for r in runs],
    )
    row.update(extra)
    return row


def run_method(env: _Env, method: str, on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Choose (static) or run the pipeline (dynamic), train the seeds, summarise: one result row."""
    seeds = _seeds(env)
    note = on_event or (lambda msg: None)
    dynamic = mixer_class(_registry_name(method)).dynamic
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
    sched = Schedule.from_list(choice["schedule"])
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


def run_controls(env: _Env, row: Mapping[str, Any], on_event: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The two controls of a dynamic method's row: per seed, (1) its schedule's time-averaged mixture
    trained statically and (2) natural for the first stage, then uniform, with the same boundaries."""
    note = on_event or (lambda msg: None)
    t = env.scale.target
    total = max(1, t.tokens // (t.seq_len * t.batch_size))
    method = str(row["method"])
    natural = Mixture.from_weights({d: float(env.corpus.token_counts()[d]) for d in env.domains})
    uniform = Mixture.uniform(env.domains)
    avg_runs, nu_runs, avg_sched, nu_sched = [], [], None, None
    # the pipeline's boundaries (a schedule whose stage kept the previous mixture lists fewer stages)
    plan = PipelineConfig.parse({"train": {}, **_stage_plan(env, method)}, where=f"bench stage plan of {method}")
    bounds = plan.boundary_steps(total)
    for s, sched_list in zip(_seeds(env), row["schedules"], strict=True):
        sched = Schedule.from_list(sched_list)
        avg_sched = Schedule.constant(time_averaged(sched, total))
        stages = [{"start_step": 0, "mixture": natural.to_dict()}]
        stages += [{"start_step": b, "mixture": uniform.to_dict()} for b in bounds]
        nu_sched = Schedule.from_list(stages)
        note(f"{method}: controls, seed {s}")
        avg_runs.append(train_target(env, f"{method}:avg-static", avg_sched, s))
        nu_runs.append(train_target(env, f"{method}:natural-then-uniform", nu_sched, s))
    assert avg_sched is not None and nu_sched is not None
    cost = {"flops": row["choose_flops"], "tokens": row["choose_tokens"], "seconds": row["choose_seconds"]}
    zero = {"flops": 0.0, "tokens": 0, "seconds": 0.0}
    return [
        _row(env, f"{method}:avg-static", avg_runs, cost, avg_sched.to_list(), control_of=method),
        _row(env, f"{method}:natural-then-uniform", nu_runs, zero, nu_sched.to_list(), control_of=method),
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
    env: _Env, on_event: Callable[[str], None] | None = None, extra: Sequence[Mixture] = ()
) -> dict[str, Any]:
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
                Schedule.constant(best).to_list(), oracle_scores=scores,
                oracle_candidates=[c.to_dict() for c in cands])


def add_deltas(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fill ``delta_vs_uniform`` / ``delta_vs_uniform_ci95`` of every row and return the track's
    summary (headroom of the oracle row, in loss and in seed SDs, when there is one)."""
    by = {r["method"]: r for r in rows}
    if "uniform" not in by:
        return {}
    base = by["uniform"]["target_per_seed"]
    for r in rows:
        mean, ci = paired_delta(r["target_per_seed"], base)
        r["delta_vs_uniform"], r["delta_vs_uniform_ci95"] = mean, ci
    summary: dict[str, Any] = {"track": rows[0].get("track")}
    if "oracle" in by:
        h = headroom(base, by["oracle"]["target_per_seed"])
        by["oracle"].update(h)
        summary.update(h)
    return summary


def _prepare_env(config: BenchConfig, corpus: Any) -> tuple[_Env, list[str]]:
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
    env = _Env(
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
    from mixlab.data.targets import parse_targets

    return [t.model_dump(exclude_defaults=True) for t in parse_targets(list(specs), "bench targets")]


def run_bench(
    config: BenchConfig,
    *,
    corpus: Any = None,
    on_event: Callable[[str], None] | None = None,
    on_method: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
    summary: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark; one result row per method that ran (keys :data:`RESULT_KEYS` first), then
    the controls of dynamic methods and the ``oracle`` row (when the scale asks for them).

    ``corpus`` may be an opened corpus (else ``config.corpus`` or the built-in corpus is opened).
    ``on_method(name, row, error)`` is called as each method finishes; a method that fails with a
    :class:`MixlabError` (or is not available in this installation) is logged and skipped, so one
    broken method does not cost the others' results. All methods failing raises. ``summary``, when
    given, receives the track's headroom (see :func:`add_deltas`).
    """
    env, methods = _prepare_env(config, corpus)
    rows: list[dict[str, Any]] = []
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
        if row["dynamic"] and env.scale.controls:
            for ctl in attempt(f"{method} controls", lambda row=row: run_controls(env, row, on_event)) or []:
                rows.append(ctl)
                if on_method:
                    on_method(ctl["method"], ctl, None)
    if not rows:
        detail = "; ".join(f"{m}: {e}" for m, e in errors.items())
        raise MixlabError(f"bench: no method finished ({detail})")
    if env.scale.oracle_candidates > 0:
        picks = [Mixture(r["mixture"]) for r in rows if r.get("mixture") and not r["dynamic"] and "control_of" not in r]
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


# ----------------------------------------------------------------------------- outputs
def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if not math.isfinite(x):
            return "nan"
        return f"{x:.3g}" if (abs(x) >= 1e4 or 0 < abs(x) < 1e-3) else f"{x:.4f}"
    return str(x)


def _ci(row: Mapping[str, Any]) -> str:
    d, ci = row.get("delta_vs_uniform"), row.get("delta_vs_uniform_ci95")
    if d is None:
        return ""
    if not ci or not all(math.isfinite(x) for x in ci):
        return f"{d:+.4f}"
    return f"{d:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"


def bench_table(rows: Sequence[Mapping[str, Any]], title: str = "mixlab bench") -> Any:
    """A rich table of the result rows (losses as mean ± std over seeds, the paired difference to
    uniform with its 95% interval)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=title,
        caption="losses: mean±std over seeds; Δ: paired per-seed difference of the target loss to uniform "
        "[95% t-interval]; FLOPs, tokens, s: compute spent choosing the mixture",
    )
    # in a narrow terminal the loss cells wrap (mean over ±std), the method names never shorten
    table.add_column("method", no_wrap=True, min_width=max([len(str(r["method"])) for r in rows] + [6]))
    for col in ("target", "Δ vs uniform [95% CI]", "avg loss", "worst"):
        table.add_column(col, justify="right")
    for col in ("FLOPs", "tokens", "s", "seeds"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            Text(str(r["method"])),  # plain text: a variant's "[key=value]" is not rich markup
            f"{r['target_loss']:.4f} ±{r.get('target_loss_std', 0.0):.4f}",
            _ci(r),
            *(f"{r[k]:.3f} ±{r.get(k + '_std', 0.0):.3f}" for k in ("avg_loss", "worst_loss")),
            f"{r['choose_flops']:.1e}",
            f"{int(r['choose_tokens']):,}",
            f"{r['choose_seconds']:.1f}",
            str(r["seeds"]),
        )
    return table


def headroom_message(summary: Mapping[str, Any]) -> tuple[str, bool]:
    """The headroom line of a track and whether it is too small to rank methods (< 5 seed SDs)."""
    if "headroom" not in summary:
        return "no oracle row: headroom unknown (the scale has oracle_candidates: 0)", False
    h, sd, ratio = summary["headroom"], summary["seed_sd"], summary["headroom_sd"]
    text = f"headroom (uniform - oracle) = {h:.4f} = {ratio:.1f} seed SDs (seed SD {sd:.4f})"
    small = not (ratio >= HEADROOM_MIN_SD)
    if small:
        text += (f"; UNDER {HEADROOM_MIN_SD:.0f} SD: this track cannot rank methods, differences between rows "
                 "are mostly seed noise")
    return text, small


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV of the :data:`RESULT_KEYS` columns plus one ``loss_<domain>`` column per domain."""
    domains: list[str] = []
    for r in rows:
        for d in r.get("per_domain", {}):
            if d not in domains:
                domains.append(d)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*RESULT_KEYS, *(f"loss_{d}" for d in domains)])
    for r in rows:
        writer.writerow([r.get(k) for k in RESULT_KEYS] + [r.get("per_domain", {}).get(d) for d in domains])
    return buf.getvalue()


def write_outputs(rows: Sequence[Mapping[str, Any]], out: str | Path) -> dict[str, Path]:
    """Write ``out`` (JSON list, one object per method), ``<out>.csv`` and ``<out>.png`` (loss
    against choosing FLOPs). Returns the paths written."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ConfigError(f"bench --out {out}: give a .json path (the CSV and plot are written next to it)")
    ordered = [{**{k: r[k] for k in RESULT_KEYS}, **{k: v for k, v in r.items() if k not in RESULT_KEYS}} for r in rows]
    atomic_write_json(out, ordered)
    csv_path = out.with_suffix(".csv")
    atomic_write_text(csv_path, rows_to_csv(rows))
    png_path = out.with_suffix(".png")
    from mixlab.report.plots import figure_to_png, plot_bench

    fig = plot_bench(ordered, metric="target_loss")
    fig.axes[0].set_title(f"{ordered[0].get('track', 'target')} track: target loss vs compute spent choosing")
    atomic_write_bytes(png_path, figure_to_png(fig))
    return {"json": out, "csv": csv_path, "png": png_path}


__all__ = [
    "DEFAULT_METHODS",
    "HEADROOM_MIN_SD",
    "TRACKS",
    "RESULT_KEYS",
    "BenchConfig",
    "MeteredProxy",
    "ModelSettings",
    "ScaleSpec",
    "add_deltas",
    "bench_table",
    "headroom",
    "headroom_message",
    "oracle_candidates",
    "paired_delta",
    "run_controls",
    "run_oracle",
    "time_averaged",
    "choose_static",
    "corpus_fingerprint",
    "list_scales",
    "load_scale",
    "open_corpus",
    "parse_method_spec",
    "reconcile_compute",
    "rows_to_csv",
    "run_bench",
    "split_methods",
    "summarise",
    "train_target",
    "write_outputs",
]
