import json
import math
from pathlib import Path

import pytest

from mixlab.errors import DataError
from mixlab.report.bench_rows import RESULT_KEYS, BenchRow
from mixlab.report.data import load_report_input

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize("name", ["bench-default.json", "bench-tracks/target-all-methods.json"])
def test_a_written_bench_file_reads_back_unchanged(name):
    """Every row of a measured bench file parses to a BenchRow and writes back the same object, keys in
    the same order (older files carry fewer keys; nothing is added or lost)."""
    path = EXAMPLES / name
    raw = json.loads(path.read_text())
    rows = load_report_input(path).bench
    assert [list(r.to_dict()) for r in rows] == [list(o) for o in raw]
    for row, obj in zip(rows, raw, strict=True):
        back = row.to_dict()
        for key, value in obj.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(back[key])
            else:
                assert back[key] == value, key


def test_unknown_keys_are_kept_and_assignments_are_validated():
    row = BenchRow.from_json({"method": "x", "avg_loss": 3, "extra_metric": [1, 2]}, "b.json: result 0")
    assert row.avg_loss == 3.0 and row.to_dict() == {"method": "x", "avg_loss": 3.0, "extra_metric": [1, 2]}
    row.delta_vs_uniform = 0.25
    assert list(row.to_dict()) == ["method", "avg_loss", "delta_vs_uniform", "extra_metric"]
    with pytest.raises(ValueError):
        row.seeds = "many"
    assert RESULT_KEYS[0] == "method" and all(k in BenchRow.model_fields for k in RESULT_KEYS)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"avg_loss": 1.0}, "result 1: the result has no 'method'"),
        ({"method": "m", "choose_tokens": "lots"}, "result 1: choose_tokens"),
        ({"method": "m", "per_domain": {"web": "high"}}, r"result 1: per_domain\.web"),
    ],
)
def test_a_bad_row_names_the_file_the_row_and_the_field(tmp_path, obj, match):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps([{"method": "uniform", "avg_loss": 1.0}, obj]))
    with pytest.raises(DataError, match=match) as exc:
        load_report_input(path)
    assert str(path) in str(exc.value)
