import numpy as np
import pytest

from mixlab import ConfigError, Mixture, MixtureConstraints, Schedule, load_mixture_or_schedule, save_mixture
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
