"""The influence matrix's one layout (rows = training domains, columns = targets): records round-trip,
older transposed records are converted on read, bad ones are refused by name, and reading needs no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mixlab.errors import DataError
from mixlab.influence.matrix import GroupInfluence

M = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]  # 3 training domains x 2 targets


def _gi() -> GroupInfluence:
    return GroupInfluence(matrix=M, stderr=np.full((3, 2), 0.5), train_domains=["a", "b", "c"], target_domains=["x", "y"],
                          stability=0.9, half_matrices=[M, M])


def test_round_trip_keeps_the_layout(tmp_path):
    gi = _gi()
    gi.save(tmp_path / "i.json")
    back = GroupInfluence.load(tmp_path / "i.json")
    assert back.matrix.tolist() == M and back.shape == (3, 2) and back.half_matrices.shape == (2, 3, 2)
    assert back.to_dict() == gi.to_dict() and "layout" not in gi.to_dict()
    assert back.aggregate({"a": 1.0}, {"y": 1.0}) == 2.0  # row a, column y


def test_older_transposed_records_are_converted_on_read():
    d = _gi().to_dict()
    flipped = d | {"matrix": np.array(M).T.tolist(), "stderr": np.full((2, 3), 0.5).tolist(),
                   "half_matrices": [np.array(M).T.tolist()] * 2}
    by_shape = GroupInfluence.from_dict(flipped)  # a 2 x 3 matrix fits only transposed
    assert by_shape.matrix.tolist() == M and by_shape.half_matrices[1].tolist() == M
    square = {"train_domains": ["a", "b"], "target_domains": ["x", "y"], "matrix": [[1, 2], [3, 4]]}
    assert GroupInfluence.from_dict(square).matrix[0, 1] == 2.0  # taken as written
    old = GroupInfluence.from_dict(square | {"layout": "target_x_train"})
    assert old.matrix[0, 1] == 3.0 and np.isnan(old.stderr).all()  # flagged: transposed; no stderr: unknown


def test_bad_records_are_refused_by_name():
    with pytest.raises(DataError, match=r"run/i.json: matrix has shape \(3, 1\), expected \(1, 2\)"):
        GroupInfluence.from_dict({"train_domains": ["a"], "target_domains": ["x", "y"], "matrix": [[1], [2], [3]]},
                                 where="run/i.json")
    with pytest.raises(DataError, match="expected keys matrix"):
        GroupInfluence.from_dict({"matrix": [[1.0]]})


def test_reading_a_matrix_does_not_import_torch(tmp_path):
    path = tmp_path / "i.json"
    path.write_text(json.dumps(_gi().to_dict()))
    code = ("import sys; from mixlab.influence import GroupInfluence; import mixlab.report.data; "
            f"GroupInfluence.load({str(path)!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
