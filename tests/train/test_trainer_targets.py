"""Evaluation-only targets in training runs: evaluated beside the domains, never trained on."""

from __future__ import annotations

import numpy as np
import pytest

from mixlab.errors import DataError
from mixlab.train import LocalProxyRunner, TrainConfig, Trainer

MARKER = "QZXJ ~~ \u00a7\u00b6 quixotic zephyr \u00a7\u00b6"  # bytes that no tiny-corpus domain holds


def _cfg(tiny_corpus, tmp_path, **kw):
    base = dict(corpus=str(tiny_corpus.root), model="nano-100k", tokens=32 * 4 * 12, seq_len=32, batch_size=4,
                eval_interval=6, eval_batches=2, workspace=str(tmp_path / "ws"), progress=False, seed=3)
    return TrainConfig.parse(base | kw)


def test_a_targets_tokens_never_enter_a_training_batch(tiny_corpus, tmp_path):
    target = tmp_path / "marker.txt"
    target.write_text("\n".join([MARKER] * 400), encoding="utf-8")
    marker = np.frombuffer(MARKER.encode("utf-8"), dtype=np.uint8)
    for d in tiny_corpus.domains:  # the test has teeth only if the marker is in no domain
        data = bytes(np.asarray(tiny_corpus.train_tokens(d)).astype(np.uint8))
        assert MARKER.encode("utf-8")[:8] not in data

    trainer = Trainer(_cfg(tiny_corpus, tmp_path, targets=[f"{target}=2"]), store=False)
    seen = []
    draw = trainer.sampler.next_batch

    def recording():
        batch = draw()
        seen.append(batch.input_ids.numpy().copy())
        return batch

    trainer.sampler.next_batch = recording
    result = trainer.fit()
    assert len(seen) == 12
    window = marker[:6].astype(np.int64)
    for rows in seen:
        for row in rows:
            hits = np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(row, 6) == window, axis=1))
            assert hits.size == 0, "a target's tokens entered a training batch"
    # the target is evaluated at every evaluation, beside every domain
    assert sorted(result.final) == sorted([*tiny_corpus.domains, "target:marker"])
    assert all("target:marker" in losses for losses in result.curve.values())
    # adding a target changes neither training nor any domain's evaluation windows
    plain = Trainer(_cfg(tiny_corpus, tmp_path, run_name="plain"), store=False).fit()
    for d in tiny_corpus.domains:
        assert plain.final[d] == pytest.approx(result.final[d], rel=1e-6)


def test_proxy_runs_report_target_losses(tiny_corpus, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("Alpha beta gamma delta. " * 200, encoding="utf-8")
    runner = LocalProxyRunner(tiny_corpus, model="nano-100k", seq_len=32, batch_size=4,
                              workspace=tmp_path / "ws", eval_batches=1, targets=[str(target)])
    res = runner.train({d: 0.25 for d in tiny_corpus.domains}, tokens=32 * 4 * 4, eval_every=2)
    assert "target:notes" in res.final and np.isfinite(res.final["target:notes"])


def test_a_bad_target_fails_before_training(tiny_corpus, tmp_path):
    with pytest.raises(DataError, match="nowhere.txt"):
        Trainer(_cfg(tiny_corpus, tmp_path, targets=[str(tmp_path / "nowhere.txt")]), store=False)


def test_target_windows_are_the_same_whatever_the_run_seed(tiny_corpus):
    from mixlab.train.evaluate import validation_windows

    toks = np.arange(20_000) % 200
    a = validation_windows(tiny_corpus, seq_len=32, batches=2, batch_size=4, seed=0, extra={"target:t": toks},
                           extra_batches=8)
    b = validation_windows(tiny_corpus, seq_len=32, batches=2, batch_size=4, seed=1, extra={"target:t": toks},
                           extra_batches=8)
    assert a["target:t"].shape == (32, 33) and bool((a["target:t"] == b["target:t"]).all())
    assert not bool((a["code"] == b["code"]).all())  # domains keep their seeded windows
