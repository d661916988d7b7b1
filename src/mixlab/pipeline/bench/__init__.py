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
``headroom`` (uniform minus oracle) is also given in seed standard deviations (pooled over every row that
trains one fixed schedule on every seed): a track whose headroom
is under 5 SD cannot rank methods. Controls for each dynamic method: its schedule's time-averaged
mixture trained statically (``<method>:avg-static``) and the schedule natural-then-uniform with the
same boundaries (``<method>:natural-then-uniform``), which separate the dynamic part from the mixture.

Every stage is resumable: a method's choice is stored (atomically) under
``<workspace>/bench/choices/`` keyed by everything that determines it, and target runs are ordinary
trainer runs keyed by their config hash, so a re-run reuses what finished and resumes what did not.

Scales (``tiny``, ``default``, ``gpu``) are a YAML data file, ``mixlab/pipeline/bench_scales.yaml``.

The package follows the benchmark's seams: :mod:`~mixlab.pipeline.bench.scales` (the scale schema
and file), :mod:`~mixlab.pipeline.bench.config` (methods, variants, :class:`BenchConfig`),
:mod:`~mixlab.pipeline.bench.runner` (choices, metering, target runs, controls, oracle),
:mod:`~mixlab.pipeline.bench.stats` (means, paired differences, headroom) and
:mod:`~mixlab.pipeline.bench.outputs` (JSON, CSV, plot, table).
"""

from mixlab.pipeline.bench.config import (
    DEFAULT_METHODS,
    TIKMIX_MIRROR,
    TIKMIX_MIRROR_EARLY,
    TRACKS,
    BenchConfig,
    parse_method_spec,
    registry_name,
    split_methods,
)
from mixlab.pipeline.bench.outputs import (
    bench_table,
    headroom_message,
    rows_to_csv,
    write_outputs,
)
from mixlab.pipeline.bench.runner import (
    BenchEnv,
    MeteredProxy,
    choose_static,
    corpus_fingerprint,
    open_corpus,
    oracle_candidates,
    prepare_env,
    reconcile_compute,
    run_bench,
    run_controls,
    run_method,
    run_oracle,
    time_averaged,
    train_target,
)
from mixlab.pipeline.bench.scales import ModelSettings, ScaleSpec, list_scales, load_scale
from mixlab.pipeline.bench.stats import (
    HEADROOM_MIN_SD,
    add_deltas,
    compare_rankings,
    headroom,
    paired_delta,
    pooled_seed_sd,
    summarise,
)
from mixlab.report.bench_rows import RESULT_KEYS, BenchRow

__all__ = [
    "DEFAULT_METHODS",
    "HEADROOM_MIN_SD",
    "RESULT_KEYS",
    "TIKMIX_MIRROR",
    "TIKMIX_MIRROR_EARLY",
    "TRACKS",
    "BenchConfig",
    "BenchEnv",
    "BenchRow",
    "MeteredProxy",
    "ModelSettings",
    "ScaleSpec",
    "add_deltas",
    "bench_table",
    "choose_static",
    "compare_rankings",
    "corpus_fingerprint",
    "headroom",
    "headroom_message",
    "list_scales",
    "load_scale",
    "open_corpus",
    "oracle_candidates",
    "paired_delta",
    "pooled_seed_sd",
    "prepare_env",
    "parse_method_spec",
    "reconcile_compute",
    "registry_name",
    "rows_to_csv",
    "run_bench",
    "run_controls",
    "run_method",
    "run_oracle",
    "split_methods",
    "summarise",
    "time_averaged",
    "train_target",
    "write_outputs",
]
