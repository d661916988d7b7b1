"""Two gloo ranks, each taking half the batches, reproduce the single-process matrix, stderr and
split-half stability."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

SETUP = textwrap.dedent(
    """
    import torch

    def _batches(seed, n):
        g = torch.Generator().manual_seed(seed)
        return [(torch.randn(8, 5, generator=g), torch.randn(8, generator=g)) for _ in range(n)]

    def loss_fn(model, batch):
        return 0.5 * ((model(batch[0]).squeeze(-1) - batch[1]) ** 2).mean()

    def setup():
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 1)
        return model, {"a": _batches(1, 5), "b": _batches(2, 4)}, {"x": _batches(3, 3), "y": _batches(4, 6)}
    """
)

WORKER = SETUP + textwrap.dedent(
    """
    import sys
    import numpy as np
    torch.set_num_threads(1)
    rank, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    from mixlab.influence import compute_group_influence
    model, train, target = setup()
    gi = compute_group_influence(model, train, target, loss_fn=loss_fn, projection_dim=4, min_stderr_batches=2)
    np.save(f"{out}/rank{rank}.npy", np.stack([gi.matrix, gi.stderr, np.full_like(gi.matrix, gi.stability)]))
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow
def test_ddp_matches_single_process(tmp_path):
    from mixlab.influence import compute_group_influence

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "rdv"), str(tmp_path)])
        for r in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ns: dict = {}
    exec(SETUP, ns)
    model, train, target = ns["setup"]()
    gi = compute_group_influence(model, train, target, loss_fn=ns["loss_fn"], projection_dim=4, min_stderr_batches=2)
    assert torch.isfinite(torch.tensor(gi.stderr)).all() and np.isfinite(gi.stability)
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npy")
        np.testing.assert_allclose(got[0], gi.matrix, rtol=1e-5)
        np.testing.assert_allclose(got[1], gi.stderr, rtol=1e-4)
        np.testing.assert_allclose(got[2], gi.stability, rtol=1e-4)  # split halves by global batch index
