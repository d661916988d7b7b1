"""Reader for the published Data Mixing Laws loss curves (``shared/data/mixinglaws``).

The files ``pile5_<size>.csv`` hold one row per (run, step, Pile validation subdomain); the five
domain groups' losses are the ``valid_weight.json``-weighted means of their subdomains (README of the
data set). :func:`load_pile5` turns one file into per-run curves of group losses, which is what the
laws are fitted on.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixlab.errors import DataError

GROUPS: dict[str, tuple[str, ...]] = {
    "academic": ("ArXiv", "PubMed_Abstracts", "PhilPapers", "NIH_ExPorter", "FreeLaw", "USPTO_Backgrounds", "PubMed_Central"),
    "prose": ("PG19", "Books3", "BookCorpus2"),
    "dialogue": ("Ubuntu_IRC", "OpenSubtitles", "EuroParl", "Enron_Emails", "HackerNews", "YoutubeSubtitles"),
    "symbolic": ("DM_Mathematics", "Github"),
    "internet": ("Pile-CC", "OpenWebText2", "StackExchange", "Wikipedia_en"),
}


@dataclass
class RunCurve:
    """One proxy run: its mixture over ``GROUPS`` and the group losses at each evaluated step."""

    run: int
    mixture: np.ndarray
    steps: np.ndarray
    losses: np.ndarray  # [n_steps, n_groups]


def load_pile5(path: str | Path, valid_weight: str | Path | None = None) -> dict[int, RunCurve]:
    """Per-run curves of the five group losses from ``pile5_<size>.csv``.

    A step's group loss is computed only when every subdomain of the group was evaluated at it.
    """
    p = Path(path)
    vw_path = Path(valid_weight) if valid_weight is not None else p.parent / "valid_weight.json"
    if not p.is_file() or not vw_path.is_file():
        raise DataError(f"{p} or {vw_path} not found; see shared/data/mixinglaws/README.md")
    vw = json.loads(vw_path.read_text())
    groups = list(GROUPS)
    raw: dict[int, dict] = {}
    with p.open(newline="") as fh:
        for row in csv.DictReader(fh):
            run = int(row["run"])
            entry = raw.setdefault(run, {"mix": [float(row[f"r_{g}"]) for g in groups], "steps": {}})
            entry["steps"].setdefault(int(row["step"]), {})[row["valid_domain"]] = float(row["loss"])
    out: dict[int, RunCurve] = {}
    for run, entry in raw.items():
        steps, losses = [], []
        for step in sorted(entry["steps"]):
            vals = entry["steps"][step]
            row = []
            for g in groups:
                subs = GROUPS[g]
                if not all(d in vals for d in subs):
                    break
                w = np.array([vw[d] for d in subs])
                row.append(float(np.dot(w, [vals[d] for d in subs]) / w.sum()))
            else:
                steps.append(step)
                losses.append(row)
        out[run] = RunCurve(run, np.array(entry["mix"]), np.array(steps, float), np.array(losses))
    return out
