import json
import math

import pytest
import yaml

from mixlab.errors import ConfigError, MixlabError
from mixlab.pipeline.bench import (
    RESULT_KEYS,
    BenchConfig,
    BenchRow,
    add_deltas,
    bench_table,
    compare_rankings,
    headroom,
    headroom_message,
    paired_delta,
    pooled_seed_sd,
    reconcile_compute,
    run_bench,
    summarise,
    time_averaged,
    write_outputs,
)
from mixlab.pipeline.bench import config as bench_config
from mixlab.proxy import ComputeLedger


def test_summarise_means_and_stds():
    finals = [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 2.0}]
    s = summarise(finals, ["a"])
    assert s["avg_loss"] == pytest.approx(2.0) and s["avg_loss_std"] == pytest.approx(0.0)
    assert s["worst_loss"] == pytest.approx(2.5) and s["worst_loss_std"] == pytest.approx(0.5)
    assert s["target_loss"] == pytest.approx(1.5) and s["target_loss_std"] == pytest.approx(0.5)
    with pytest.raises(MixlabError):
        summarise(finals, ["c"])


def test_reconcile_compute_never_double_counts():
    recorded = ComputeLedger(flops=10.0, tokens=100, seconds=1.0)
    metered = ComputeLedger(flops=10.0, tokens=100, seconds=3.0)
    assert reconcile_compute(recorded, metered, 2.0) == {"flops": 10.0, "tokens": 100, "seconds": 3.0}
    # a method that forgot to record its proxy runs still gets them counted
    assert reconcile_compute(ComputeLedger(), metered, 5.0)["flops"] == 10.0


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown method"):
        BenchConfig(methods=["nope"]).resolved()
    with pytest.raises(ConfigError, match="scale"):
        BenchConfig(scale="huge").resolved()
    spec, methods = BenchConfig(scale="tiny", seeds=1, target_tokens=1000).resolved()
    assert spec.seeds == 1 and spec.target.tokens == 1000 and spec.target.model == "nano-100k"
    assert methods[:3] == ["uniform", "natural", "unimax"] and "tikmix-d" in methods
    # the paper's TiKMiX-D and the mirror variant are both default rows; the variant's plan goes to the
    # pipeline, the rest to the mixer
    from mixlab.pipeline.bench import TIKMIX_MIRROR, TIKMIX_MIRROR_EARLY, parse_method_spec
    from mixlab.pipeline.dynamic import PLAN_KEYS

    assert TIKMIX_MIRROR in methods and TIKMIX_MIRROR_EARLY in methods
    name, params = parse_method_spec(TIKMIX_MIRROR)
    assert name == "tikmix-d" and params["objective"] == "mirror" and params["budget"] == "fixed"
    assert {k: params[k] for k in PLAN_KEYS if k in params} == {"stages": 4, "initial": "uniform"}
    name, params = parse_method_spec(TIKMIX_MIRROR_EARLY)
    assert name == "tikmix-d" and params["search_steps"] == 8
    assert {k: params[k] for k in PLAN_KEYS if k in params} == {
        "stages": 4, "initial": "uniform", "first_boundary": 0.03}


@pytest.mark.slow
def test_bench_end_to_end_tiny_and_resumes(tiny_corpus, tmp_path, monkeypatch):
    cfg = BenchConfig(
        scale="tiny",
        methods=["uniform", "natural", "doremi"],
        workspace=str(tmp_path / "ws"),
        target_domains=["english", "code"],
        device="cpu",
    )
    rows = run_bench(cfg, corpus=tiny_corpus)
    assert [r.method for r in rows] == ["uniform", "natural", "doremi"]
    for r in rows:
        assert set(RESULT_KEYS) <= set(r.to_dict())
        assert r.seeds == 2
        assert all(math.isfinite(getattr(r, k)) and getattr(r, k) > 0 for k in ("avg_loss", "worst_loss", "target_loss"))
        assert r.worst_loss >= r.avg_loss
        assert r.target_loss == pytest.approx(
            (r.per_domain["english"] + r.per_domain["code"]) / 2, rel=1e-9
        )
    by = {r.method: r for r in rows}
    assert by["uniform"].choose_flops == 0 and by["natural"].choose_tokens == 0
    assert by["doremi"].choose_flops > 0 and by["doremi"].choose_tokens == 2 * 16 * 8 * 64
    assert by["uniform"].mixture == pytest.approx({d: 0.25 for d in tiny_corpus.domains})
    # different mixtures give different target models
    assert by["uniform"].avg_loss != by["natural"].avg_loss

    paths = write_outputs(rows, tmp_path / "bench.json")
    data = json.loads(paths["json"].read_text())
    assert [list(d)[: len(RESULT_KEYS)] for d in data] == [list(RESULT_KEYS)] * 3
    assert paths["csv"].read_text().splitlines()[0].startswith(",".join(RESULT_KEYS))
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert bench_table(rows).row_count == 3

    # a re-run reuses every stored choice and finished target run: nothing is chosen or trained again
    from mixlab.mixers.doremi import DoReMiMixer
    from mixlab.train import Trainer

    monkeypatch.setattr(DoReMiMixer, "propose", lambda self, ctx: (_ for _ in ()).throw(AssertionError("re-chosen")))
    steps_run = []
    original = Trainer.train_until

    def spy(self, step):
        steps_run.append(step - self.step)
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_until", spy)
    again = run_bench(cfg, corpus=tiny_corpus)
    assert all(n == 0 for n in steps_run)
    assert [r.avg_loss for r in again] == [r.avg_loss for r in rows]


def test_bench_cli_tiny(tiny_corpus, tmp_path):
    from typer.testing import CliRunner

    from mixlab.cli.main import build_app

    out = tmp_path / "res.json"
    result = CliRunner().invoke(
        build_app(),
        ["bench", "--scale", "tiny", "--methods", "uniform,unimax", "--seeds", "1", "--corpus",
         str(tiny_corpus.root), "--workspace", str(tmp_path / "ws"), "--out", str(out), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [d["method"] for d in data] == ["uniform", "unimax"] and data[0]["seeds"] == 1
    assert "uniform" in result.output and out.with_suffix(".png").is_file()


def test_bench_cli_help_and_bad_method():
    from typer.testing import CliRunner

    from mixlab.cli.main import build_app, main

    result = CliRunner().invoke(build_app(), ["bench", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0 and "mixlab bench --scale tiny" in result.output
    # rich markup must not swallow the variant syntax
    assert "tikmix-d[pareto=false]" in result.output and "NAME[key=value,...]" in result.output
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--methods", "nope"])
    assert exc.value.code == 2


def test_dynamic_methods_run_through_the_pipeline(tiny_corpus, tmp_path, monkeypatch):
    # stand-in for TiKMiX: the uniform mixer flagged dynamic is asked at the stage boundary by the
    # lead's pipeline, which trains the target itself; the bench must take losses and schedule from it
    from mixlab.mixers.baselines import UniformMixer

    monkeypatch.setattr(UniformMixer, "dynamic", True)
    cfg = BenchConfig(scale="tiny", methods=["uniform"], seeds=1, workspace=str(tmp_path / "ws"), device="cpu")
    (row,) = run_bench(cfg, corpus=tiny_corpus)
    assert row.dynamic is True and row.seeds == 1
    assert len(row.schedule) == 2 and row.schedule[1]["mixture"] == pytest.approx(
        {d: 0.25 for d in tiny_corpus.domains}
    )
    assert row.run_ids[0].startswith("bench-uniform-s0-")
    assert math.isfinite(row.avg_loss) and row.choose_flops == 0


def test_a_variant_names_the_stage_plan(tiny_corpus, tmp_path, monkeypatch):
    # stages/first_boundary in a variant go to the pipeline (not to the mixer): an earlier first decision
    from mixlab.mixers.baselines import UniformMixer

    monkeypatch.setattr(UniformMixer, "dynamic", True)
    cfg = BenchConfig(scale="tiny", methods=["uniform[stages=3,first_boundary=0.25]"], seeds=1,
                      workspace=str(tmp_path / "ws"), device="cpu")  # fmt: skip
    rows = {r.method: r for r in run_bench(cfg, corpus=tiny_corpus)}
    assert rows["uniform"].schedule[1]["start_step"] == 8  # the scale's plan: half of 16 steps
    assert rows["uniform[stages=3,first_boundary=0.25]"].schedule[1]["start_step"] == 4


def test_method_specs_and_lists():
    from mixlab.pipeline.bench import parse_method_spec, split_methods

    assert parse_method_spec("regmix") == ("regmix", {})
    assert parse_method_spec("tikmix-d[pareto=false, gamma=0.5,objective=linear]") == (
        "tikmix-d", {"pareto": False, "gamma": 0.5, "objective": "linear"}
    )
    assert split_methods("uniform, tikmix-d[pareto=false,gamma=0.5],regmix") == [
        "uniform", "tikmix-d[pareto=false,gamma=0.5]", "regmix"
    ]
    for bad in ("tikmix-d[pareto]", "tikmix-d[=1]", "a b"):
        with pytest.raises(ConfigError):
            parse_method_spec(bad)
    with pytest.raises(ConfigError, match="unknown method"):
        BenchConfig(methods=["nope[x=1]"]).resolved()


def test_a_method_variant_is_its_own_row(tiny_corpus, tmp_path):
    cfg = BenchConfig(
        scale="tiny", methods=["doremi", "doremi[steps=8]"], seeds=1, workspace=str(tmp_path / "ws"), device="cpu"
    )
    rows = run_bench(cfg, corpus=tiny_corpus)
    assert [r.method for r in rows] == ["uniform", "doremi", "doremi[steps=8]"]  # uniform: the pairing baseline
    rows = rows[1:]
    # the variant overrides the scale's 16 steps (reference + proxy, 8 sequences of 64 tokens a step)
    assert rows[0].choose_tokens == 2 * 16 * 8 * 64 and rows[1].choose_tokens == 2 * 8 * 8 * 64
    assert rows[0].run_ids != rows[1].run_ids
    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(bench_table(rows))
    assert "doremi[steps=8]" in console.export_text()  # not swallowed as rich markup


def test_the_scales_target_warmup_reaches_static_and_dynamic_target_runs(tiny_corpus, tmp_path, monkeypatch):
    # both kinds of target run must train with the same LR schedule, or the rows are not comparable
    from mixlab.mixers.baselines import UniformMixer

    tiny = bench_config.load_scale("tiny")
    assert tiny.target.warmup is None  # the trainer's default unless a scale says otherwise
    scale = tiny.model_copy(update={"target": tiny.target.model_copy(update={"warmup": 5})})
    monkeypatch.setattr(bench_config, "load_scale", lambda name: scale)
    ws = tmp_path / "ws"
    (static,) = run_bench(BenchConfig(scale="tiny", methods=["uniform"], seeds=1, workspace=str(ws), device="cpu"),
                          corpus=tiny_corpus)  # fmt: skip
    monkeypatch.setattr(UniformMixer, "dynamic", True)
    (dynamic,) = run_bench(BenchConfig(scale="tiny", methods=["uniform"], seeds=1, workspace=str(ws), device="cpu"),
                           corpus=tiny_corpus)  # fmt: skip
    assert dynamic.dynamic is True and static.dynamic is False
    for row in (static, dynamic):
        config = yaml.safe_load((ws / "runs" / row.run_ids[0] / "config.yaml").read_text())
        assert config["warmup"] == 5


def test_paired_delta_and_headroom_on_a_toy_case():
    # per-seed differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.302653 -> half-width 0.248414
    mean, ci = paired_delta([1.1, 1.2, 1.3], [1.0, 1.0, 1.0])
    assert mean == pytest.approx(0.2)
    assert ci == pytest.approx([0.2 - 0.2484138, 0.2 + 0.2484138], abs=1e-6)
    assert paired_delta([2.0], [1.0])[0] == 1.0 and all(math.isnan(x) for x in paired_delta([2.0], [1.0])[1])
    # uniform 2.0 +- (sd 0.1), oracle 1.5 +- (sd 0.1): headroom 0.5 = 5 seed SDs
    h = headroom([1.9, 2.0, 2.1], [1.4, 1.5, 1.6])
    assert h["headroom"] == pytest.approx(0.5) and h["seed_sd"] == pytest.approx(0.1)
    assert h["headroom_sd"] == pytest.approx(5.0)
    text, small = headroom_message(headroom([1.9, 2.0, 2.1], [1.8, 1.9, 2.0]))
    assert small and "UNDER 5 SD" in text and "1.0 seed SDs" in text
    assert not headroom_message(h)[1] or h["headroom_sd"] < 5  # exactly 5 SD is enough
    with pytest.raises(MixlabError):
        paired_delta([], [])


def test_seed_sd_pools_every_fixed_mixture_row_once():
    # three mixtures with per-seed deviations (-0.1, 0, +0.1), (-0.2, 0, +0.2), (-0.3, 0, +0.3):
    # SS = 0.02 + 0.08 + 0.18 = 0.28 over 3 * 2 = 6 df -> pooled SD sqrt(0.28 / 6)
    sd, df = pooled_seed_sd([[1.9, 2.0, 2.1], [1.3, 1.5, 1.7], [0.7, 1.0, 1.3]])
    assert df == 6 and sd == pytest.approx(math.sqrt(0.28 / 6))
    # a row shown twice (unimax = uniform, oracle = RegMix's pick) and a one-seed row count nothing more
    assert pooled_seed_sd([[1.9, 2.0, 2.1], [1.9, 2.0, 2.1], [5.0], [1.3, 1.5, 1.7]]) == pytest.approx(
        (math.sqrt(0.10 / 4), 4))
    assert math.isnan(pooled_seed_sd([[1.0]])[0])
    # uniform sd 0.1, oracle sd 0.1, headroom 0.5; a third fixed row with sd 0.2 raises the pooled SD
    h = headroom([1.9, 2.0, 2.1], [1.4, 1.5, 1.6], noise_rows=[[1.3, 1.5, 1.7]])
    assert h["seed_sd"] == pytest.approx(math.sqrt((0.02 + 0.02 + 0.08) / 6)) and h["seed_sd_df"] == 6
    assert h["headroom_sd"] == pytest.approx(0.5 / h["seed_sd"])
    assert h["seed_sd_two_rows"] == pytest.approx(0.1) and h["headroom_sd_two_rows"] == pytest.approx(5.0)
    text, _ = headroom_message(h)
    assert "6 df" in text and "uniform and oracle alone 5.0 SDs" in text


def test_add_deltas_pools_the_fixed_rows_not_the_dynamic_ones():
    def row(method, per_seed, dynamic=False):
        return BenchRow(method=method, target_per_seed=per_seed, dynamic=dynamic, track="target")

    rows = [
        row("uniform", [2.0, 2.1, 2.2]),
        row("regmix", [1.5, 1.6, 1.7]),
        row("tikmix-d", [1.0, 2.0, 3.0], dynamic=True),  # re-chooses per seed: not seed noise
        row("tikmix-d:avg-static", [1.0, 2.0, 3.0]),  # each seed's own mixture: not seed noise
        row("tikmix-d:natural-then-uniform", [1.8, 2.0, 2.2]),  # one schedule on every seed
        row("oracle", [1.5, 1.6, 1.7]),  # RegMix's pick: the same runs, counted once
    ]
    summary = add_deltas(rows)
    assert summary["seed_sd_df"] == 6
    assert summary["seed_sd"] == pytest.approx(math.sqrt((0.02 + 0.02 + 0.08) / 6))
    assert rows[-1].headroom == pytest.approx(0.5) and rows[-1].seed_sd == summary["seed_sd"]


def test_time_averaged_mixture_weights_stages_by_steps():
    from mixlab.mixture import Schedule

    sched = Schedule.from_json([{"start_step": 0, "mixture": {"a": 1.0, "b": 0.0}},
                                {"start_step": 25, "mixture": {"a": 0.0, "b": 1.0}}])
    assert time_averaged(sched, 100).to_dict() == pytest.approx({"a": 0.25, "b": 0.75})


def test_target_track_oracle_controls_and_paired_deltas(tiny_corpus, tmp_path, monkeypatch):
    """Target track on a file target: the oracle row (its selection runs are its compute), the two
    controls of a dynamic method (unimax flagged dynamic stands in for TiKMiX), paired deltas."""
    from mixlab.mixers.baselines import UniMaxMixer

    monkeypatch.setattr(UniMaxMixer, "dynamic", True)
    target = tmp_path / "eval.txt"
    target.write_text("\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(400)), encoding="utf-8")
    cfg = BenchConfig(scale="tiny", methods=["unimax"], seeds=2, workspace=str(tmp_path / "ws"), device="cpu",
                      targets=[f"{target}=2", "domain:english"], oracle_candidates=3, controls=True)
    summary: dict = {}
    rows = run_bench(cfg, corpus=tiny_corpus, summary=summary)
    by = {r.method: r for r in rows}
    assert list(by) == ["uniform", "unimax", "unimax:avg-static", "unimax:natural-then-uniform", "oracle"]
    u = by["uniform"]
    for r in rows:  # target_loss is the weighted target loss, 2/3 eval.txt + 1/3 english, per seed
        for final_seed, t in zip(r.run_ids, r.target_per_seed, strict=True):
            assert math.isfinite(t) and final_seed
        assert r.target_loss == pytest.approx(
            2 / 3 * r.per_domain["target:eval"] + 1 / 3 * r.per_domain["english"], rel=1e-9)
        d = [a - b for a, b in zip(r.target_per_seed, u.target_per_seed, strict=True)]
        assert r.delta_vs_uniform == pytest.approx(sum(d) / 2)
        assert len(r.delta_vs_uniform_ci95) == 2
    assert u.delta_vs_uniform == 0.0
    # controls: the same boundaries, natural first then uniform; the dynamic schedule's average
    b = by["unimax"].schedule[1]["start_step"]
    nu = by["unimax:natural-then-uniform"].schedule
    assert [st["start_step"] for st in nu] == [0, b] and nu[1]["mixture"] == pytest.approx(u.mixture)
    assert by["unimax:avg-static"].mixture is not None and by["unimax:avg-static"].control_of == "unimax"
    # oracle: best of 3 candidates on a selection seed, then the paired seeds; compute = the selection runs
    o = by["oracle"]
    assert len(o.oracle_scores) == 3 and o.choose_flops > 0 and o.seeds == 2
    assert o.mixture == pytest.approx(o.oracle_candidates[o.oracle_scores.index(min(o.oracle_scores))])
    assert summary["headroom"] == pytest.approx(u.target_loss - o.target_loss)
    assert math.isfinite(summary["headroom_sd"]) or summary["seed_sd"] == 0
    assert summary["objective_keys"] == ["target:eval", "english"]


@pytest.mark.parametrize("kind", ["missing", "empty", "binary"])
def test_bench_cli_bad_target_is_a_clear_error(tiny_corpus, tmp_path, capsys, kind):
    from mixlab.cli.main import main

    path = tmp_path / f"{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(b"\x00\x01\x02PK" * 500)
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--scale", "tiny", "--methods", "uniform", "--corpus", str(tiny_corpus.root),
              "--workspace", str(tmp_path / "ws"), "--target", str(path), "--out", str(tmp_path / "b.json")])
    assert exc.value.code == 2
    err = capsys.readouterr()
    text = " ".join((err.err + err.out).split())
    assert str(path) in text.replace("\n", "") or path.name in text
    assert "Traceback" not in err.err


def test_a_long_variant_name_leaves_the_numbers_room_in_80_columns():
    # a variant spec can be longer than the terminal; it folds inside its cell instead of taking the
    # whole width (which printed empty loss columns when the bench's output went to a file)
    from rich.console import Console

    from mixlab.report.bench_rows import BenchRow

    long_name = "tikmix-d[objective=mirror,budget=fixed,initial=uniform,stages=4]:avg-static"
    row = BenchRow(
        method=long_name, avg_loss=2.7021, avg_loss_std=0.044, worst_loss=3.247, worst_loss_std=0.1,
        target_loss=2.9230, target_loss_std=0.05, choose_flops=1e11, choose_tokens=4096, choose_seconds=1.0,
        seeds=5, delta_vs_uniform=-0.1, delta_vs_uniform_ci95=[-0.2, -0.05],
    )
    console = Console(record=True, width=80)
    console.print(bench_table([row]))
    text = console.export_text()
    assert "2.9230" in text and "2.702" in text
    assert "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2) == long_name


def test_compare_rankings_tells_swaps_within_noise_from_real_ones():
    def rows(losses):
        return [BenchRow(method=m, target_per_seed=v, target_loss=sum(v) / len(v), track="target")
                for m, v in losses.items()]  # fmt: skip

    first = rows({
        "uniform": [2.00, 2.10, 2.20],
        "a": [1.50, 1.60, 1.70],  # 0.5 below uniform on every seed: separated
        "b": [1.52, 1.58, 1.73],  # within the noise of a
        "c": [1.90, 2.00, 2.10],  # 0.1 below uniform on every seed: separated from uniform and a
    })
    first.append(BenchRow(method="oracle", target_per_seed=[0.1, 0.1, 0.1], target_loss=0.1))  # not a method
    second = rows({
        "uniform": [2.00, 2.10, 2.20],
        "a": [1.56, 1.61, 1.72],  # a and b swap, within the noise of both runs
        "b": [1.50, 1.60, 1.70],
        "c": [1.90, 2.00, 2.10],
    })
    cmp = compare_rankings(first, second)
    assert cmp["methods"] == ["uniform", "a", "b", "c"]
    assert cmp["ranks"] == [[4.0, 1.0, 2.0, 3.0], [4.0, 2.0, 1.0, 3.0]]
    assert cmp["swaps_within_noise"] == [["a", "b"]] and cmp["discordant"] == [] and cmp["stable"]
    assert cmp["spearman"] == pytest.approx(0.8)
    # c jumps below a in the second run on every seed: a separated pair swaps, the ranking is unstable
    third = rows({"uniform": [2.00, 2.10, 2.20], "a": [1.50, 1.60, 1.70], "b": [1.52, 1.58, 1.73],
                  "c": [1.20, 1.30, 1.40]})  # fmt: skip
    cmp = compare_rankings(first, third)
    assert cmp["discordant"] == [["a", "c"], ["b", "c"]] and not cmp["stable"]
    with pytest.raises(MixlabError, match="share 1 method"):
        compare_rankings(first, rows({"uniform": [2.0, 2.1, 2.2], "z": [1.0, 1.1, 1.2]}))


def test_bench_compare_command_prints_the_verdict_and_exits_by_it(tmp_path):
    from typer.testing import CliRunner

    from mixlab.cli.main import build_app

    def write(name, losses):
        rows = [BenchRow(method=m, target_per_seed=v, target_loss=sum(v) / len(v), track="target").to_dict()
                for m, v in losses.items()]  # fmt: skip
        (tmp_path / name).write_text(json.dumps(rows))
        return str(tmp_path / name)

    base = {"uniform": [2.0, 2.1, 2.2], "a": [1.5, 1.6, 1.7], "c": [1.9, 2.0, 2.1]}
    a = write("a.json", base)
    b = write("b.json", base | {"c": [1.2, 1.3, 1.4]})
    res = CliRunner().invoke(build_app(), ["bench-compare", a, a, "--out", str(tmp_path / "cmp.json")])
    assert res.exit_code == 0, res.output
    assert "ranking stable" in res.output and json.loads((tmp_path / "cmp.json").read_text())["stable"]
    res = CliRunner().invoke(build_app(), ["bench-compare", a, b])
    assert res.exit_code == 1 and "SWAPPED although both runs separate them: a / c" in res.output
    res = CliRunner().invoke(build_app(), ["bench-compare", a, str(tmp_path / "missing.json")])
    assert isinstance(res.exception, MixlabError) and "missing.json: JSON file not found" in str(res.exception)
