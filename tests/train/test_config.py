"""TrainConfig's mixture field: parsed once on validation, written back in the form users gave."""

import pytest
import yaml

from mixlab import ConfigError, Mixture, MixtureSpec, Schedule, save_mixture
from mixlab.train import TrainConfig

STAGES = [{"start_step": 0, "mixture": {"a": 0.5, "b": 0.5}}, {"start_step": 4, "mixture": {"a": 1.0}}]


@pytest.mark.parametrize(
    ("mixture", "digest"),
    [
        (None, "4c2b0ef47bfc6889"),
        ("natural", "4246aab7f16f25aa"),
        ("uniform", "cc6d7b4ca5ee1b0e"),
        ({"a": 0.75, "b": 0.25}, "18385bd0f101bb65"),
        ("a=3,b=1", "18385bd0f101bb65"),  # inline weights are normalised before they are hashed
        (STAGES, "c36f3492b4b29f2d"),
    ],
)
def test_config_hash_is_unchanged(mixture, digest):
    """The run id of a config must not change when the mixture's parsing does: these digests are the
    ones the code gave before mixtures were parsed on validation, so existing runs still resume."""
    assert TrainConfig.parse({"corpus": "c", "mixture": mixture}).config_hash("fp")[:16] == digest


def test_mixture_is_a_spec_and_dumps_as_written():
    cfg = TrainConfig.parse({"mixture": STAGES})
    assert isinstance(cfg.mixture, MixtureSpec) and cfg.mixture.schedule == Schedule.from_json(STAGES)
    assert cfg.model_dump(mode="json")["mixture"] == STAGES
    again = TrainConfig.parse(cfg.model_dump(mode="json"))
    assert again.mixture == cfg.mixture
    assert TrainConfig.parse({}).resolve_mixture(["a", "b"], {"a": 1, "b": 3}) == Schedule.constant(
        Mixture({"a": 0.25, "b": 0.75}))


def test_run_file_names_its_mixture_file_relative_to_itself(tmp_path, monkeypatch):
    sub = tmp_path / "conf"
    sub.mkdir()
    save_mixture(Schedule.from_json(STAGES), sub / "mix.yaml")
    (sub / "run.yaml").write_text(yaml.safe_dump({"train": {"mixture": "mix.yaml"}}))
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.from_yaml(sub / "run.yaml")
    assert cfg.mixture.schedule == Schedule.from_json(STAGES)


def test_bad_mixture_names_the_file_and_field(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"mixture": {"a": 0.2, "b": 0.2}}))
    with pytest.raises(ConfigError, match=r"run.yaml: mixture: mixture weights must sum to 1"):
        TrainConfig.from_yaml(tmp_path / "run.yaml")
    with pytest.raises(ConfigError, match=r"train config: mixture: schedule stage 1: unknown domain"):
        TrainConfig.parse({"mixture": [STAGES[0], {"start_step": 4, "mixture": {"z": 1.0}}]}).resolve_mixture(
            ["a", "b"], {"a": 1, "b": 1})
