import re

import numpy as np
import pytest

from mixlab import (
    ConfigError,
    Mixture,
    MixtureConstraints,
    MixtureSpec,
    Schedule,
    load_mixture_or_schedule,
    save_mixture,
)
from mixlab.mixture import project_to_bounded_simplex


def test_mixture_validates_sum_and_sign():
    with pytest.raises(ConfigError, match="sum to 1"):
        Mixture({"a": 0.5, "b": 0.4})
    with pytest.raises(ConfigError, match=">= 0"):
        Mixture({"a": 1.5, "b": -0.5})
    with pytest.raises(ConfigError, match="empty"):
        Mixture({})


def test_mixture_aligns_by_name_not_position():
    m = Mixture({"code": 0.25, "web": 0.75})
    assert m.to_array(["web", "code", "math"]).tolist() == [0.75, 0.25, 0.0]
    with pytest.raises(ConfigError, match="unknown domain"):
        m.to_array(["web", "math"])


def test_from_weights_normalises():
    m = Mixture.from_weights([1, 3], domains=["a", "b"])
    assert m["a"] == pytest.approx(0.25) and m["b"] == pytest.approx(0.75)


def test_schedule_lookup_and_validation():
    s = Schedule.from_pairs([(0, {"a": 1.0}), (10, {"a": 0.5, "b": 0.5})])
    assert s.mixture_at(9)["a"] == 1.0
    assert s.mixture_at(10)["b"] == 0.5
    assert s.stage_index(100) == 1
    with pytest.raises(ConfigError, match="increase"):
        Schedule.from_pairs([(0, {"a": 1.0}), (0, {"a": 1.0})])
    with pytest.raises(ConfigError, match="step 0"):
        Schedule.from_pairs([(5, {"a": 1.0})])
    replaced = s.with_stage(5, Mixture({"b": 1.0}))
    assert [st.start_step for st in replaced.stages] == [0, 5]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_files(tmp_path, suffix):
    s = Schedule.from_pairs([(0, {"a": 0.3, "b": 0.7}), (4, {"a": 1.0})])
    save_mixture(s, tmp_path / f"s{suffix}")
    assert load_mixture_or_schedule(tmp_path / f"s{suffix}") == s
    m = Mixture({"a": 0.3, "b": 0.7})
    save_mixture(m, tmp_path / f"m{suffix}")
    assert load_mixture_or_schedule(tmp_path / f"m{suffix}") == m


def test_bad_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 0.5\nb: 0.6\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_mixture_or_schedule(p)


def test_availability_caps_and_infeasible_budget():
    c = MixtureConstraints.build(
        ["a", "b"], available_tokens={"a": 100, "b": 1000}, remaining_tokens=1000, max_epochs=2
    )
    assert c.upper.tolist() == [0.2, 1.0]
    with pytest.raises(ConfigError, match="not enough data"):
        MixtureConstraints.build(["a", "b"], available_tokens={"a": 10, "b": 10}, remaining_tokens=1000, max_epochs=1)


def test_projection_is_feasible_and_idempotent():
    rng = np.random.default_rng(0)
    lo, hi = np.array([0.1, 0.0, 0.0]), np.array([0.5, 0.6, 0.3])
    for _ in range(20):
        w = project_to_bounded_simplex(rng.normal(size=3), lo, hi)
        assert w.sum() == pytest.approx(1) and np.all(w >= lo - 1e-9) and np.all(w <= hi + 1e-9)
        assert np.allclose(project_to_bounded_simplex(w, lo, hi), w, atol=1e-8)


SCHED = Schedule.from_pairs([(0, {"a": 0.5, "b": 0.5}), (10, {"a": 0.2, "b": 0.8})])


def test_schedule_json_is_one_form_and_reads_older_shapes():
    assert SCHED.to_json() == [{"start_step": 0, "mixture": {"a": 0.5, "b": 0.5}},
                               {"start_step": 10, "mixture": {"a": 0.2, "b": 0.8}}]
    assert Schedule.from_json(SCHED.to_json()) == SCHED
    assert Schedule.from_json({"schedule": SCHED.to_json()}) == SCHED  # a schedule.json file
    const = Schedule.constant(Mixture({"a": 0.25, "b": 0.75}))
    assert Schedule.from_json({"a": 0.25, "b": 0.75}) == const  # an old store row: a bare mapping
    assert Schedule.from_json({"mixture": {"a": 0.25, "b": 0.75}}) == const
    assert const.is_constant and not SCHED.is_constant


@pytest.mark.parametrize(
    ("bad", "msg"),
    [
        ("text", "expected a list of stages"),
        ([{"start_step": 0}], "where[0]: each stage needs"),
        ([{"start_step": "x", "mixture": {"a": 1}}], "where[0]: start_step must be a whole number"),
        ([{"start_step": 0, "mixture": {"a": 0.4}}], "where[0]: mixture weights must sum to 1"),
        ([{"start_step": 5, "mixture": {"a": 1}}], "where: schedule must start at step 0"),
    ],
)
def test_schedule_from_json_names_where(bad, msg):
    with pytest.raises(ConfigError, match=re.escape(msg)):
        Schedule.from_json(bad, where="where")


def test_mixture_spec_parses_every_user_form(tmp_path):
    natural = MixtureSpec.parse("natural")
    assert natural.name == "natural" and natural.to_config() == "natural"
    assert natural.resolve(["a", "b"], {"a": 1, "b": 3}) == Schedule.constant(Mixture({"a": 0.25, "b": 0.75}))
    assert MixtureSpec.parse("uniform").resolve(["a", "b"], {}) == Schedule.constant(Mixture.uniform(["a", "b"]))
    inline = MixtureSpec.parse("a=3, b=1")  # normalised, as the CLI always did
    assert inline.schedule == Schedule.constant(Mixture({"a": 0.75, "b": 0.25}))
    assert inline.to_config() == {"a": 0.75, "b": 0.25}
    assert MixtureSpec.parse({"a": 0.75, "b": 0.25}) == inline
    assert MixtureSpec.parse(SCHED.to_json()).schedule == SCHED
    assert MixtureSpec.parse(SCHED.to_json()).to_config() == SCHED.to_json()
    assert MixtureSpec.parse(SCHED).schedule == SCHED
    save_mixture(SCHED, tmp_path / "s.yaml")
    assert MixtureSpec.parse(str(tmp_path / "s.yaml")).schedule == SCHED
    # a file named relative to a config file's folder
    assert MixtureSpec.rebase("s.yaml", tmp_path) == str(tmp_path / "s.yaml")
    assert MixtureSpec.rebase("uniform", tmp_path) == "uniform"
    assert MixtureSpec.rebase("a=1", tmp_path) == "a=1"


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("a=x", "cfg: weight of 'a' is not a number"),
        ("a=1,b", "cfg: cannot read 'b'"),
        ("a=0,b=0", "cfg: mixture weights are all zero"),
        ("nope.yaml", "cfg: nope.yaml"),
        ({"a": 0.3}, "cfg: mixture weights must sum to 1"),
        (3, "cfg: expected natural, uniform"),
    ],
)
def test_mixture_spec_errors_name_the_field(value, msg):
    with pytest.raises(ConfigError, match=re.escape(msg)):
        MixtureSpec.parse(value, where="cfg")


def test_mixture_spec_resolve_checks_domains():
    with pytest.raises(ConfigError, match=r"unknown domain\(s\) \['c'\]"):
        MixtureSpec.parse({"a": 0.5, "c": 0.5}).resolve(["a", "b"], {"a": 1, "b": 1})
