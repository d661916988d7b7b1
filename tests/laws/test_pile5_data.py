"""The published mixing-laws curves load into group losses (skipped when shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixlab.laws.pile5 import GROUPS, load_pile5

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "mixinglaws"


@pytest.mark.skipif(not (DATA / "pile5_70M.csv").is_file(), reason="shared/data/mixinglaws not present")
def test_group_loss_is_the_weighted_mean_of_subdomains():
    import csv

    runs = load_pile5(DATA / "pile5_70M.csv")
    assert len(runs) == 26
    vw = json.loads((DATA / "valid_weight.json").read_text())
    raw = {r["valid_domain"]: float(r["loss"]) for r in csv.DictReader(open(DATA / "pile5_70M.csv"))
           if r["run"] == "0" and r["step"] == "30000"}
    subs = GROUPS["prose"]
    expected = sum(vw[d] * raw[d] for d in subs) / sum(vw[d] for d in subs)
    c = runs[0]
    assert c.losses[list(c.steps).index(30000), list(GROUPS).index("prose")] == pytest.approx(expected)
    assert np.allclose(c.mixture.sum(), 1.0)
