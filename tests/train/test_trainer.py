import json
import math

import pytest
import torch

from mixlab.errors import ConfigError, TrainingError
from mixlab.mixture import Mixture, Schedule
from mixlab.store import RunArtifacts, RunStore
from mixlab.train import LocalProxyRunner, TrainConfig, Trainer, evaluate_domains, lr_at
from mixlab.train import checkpoint as ckpt_io

torch.set_num_threads(1)


def _cfg(tmp_path, **kw):
    base = dict(model="nano-100k", tokens=32 * 4 * 40, seq_len=32, batch_size=4, lr=3e-3, warmup=5,
                eval_interval=10, eval_batches=2, workspace=str(tmp_path / "ws"), progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_eval_has_one_loss_per_domain(tiny_corpus, tmp_path):
    trainer = Trainer(_cfg(tmp_path), corpus=tiny_corpus)
    assert trainer.total_steps == 40
    before = trainer.evaluate()
    result = trainer.fit()
    assert set(result.curve) == {10, 20, 30, 40}
    assert set(result.final) == set(tiny_corpus.domains)
    for d in tiny_corpus.domains:
        # random characters have ~log(75) nats of entropy, so "noise" can fall only so far
        assert result.final[d] < before[d] - (0.3 if d == "noise" else 1.0), d
    assert abs(before["english"] - math.log(tiny_corpus.vocab_size)) < 0.3
    losses = list(result.train_losses.values())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert result.tokens == 40 * 4 * 32
    assert result.flops == pytest.approx(trainer.flops_per_token * result.tokens)
    store = RunStore(tmp_path / "ws")
    run = store.get_run(result.run_id)
    assert run["status"] == "finished" and run["tokens"] == result.tokens
    assert store.curve(result.run_id) == result.curve
    assert len(store.curve(result.run_id, "train")) == 40
    assert (result.run_dir / "checkpoints" / "latest").is_file()


def test_evaluate_domains_fixed_batches(tiny_corpus):
    from mixlab.model import GPT, preset

    torch.manual_seed(0)
    model = GPT(preset("nano-100k", vocab_size=tiny_corpus.vocab_size))
    a = evaluate_domains(model, tiny_corpus, seq_len=32, batches=2, batch_size=4, seed=0)
    b = evaluate_domains(model, tiny_corpus, seq_len=32, batches=2, batch_size=4, seed=0)
    assert list(a) == tiny_corpus.domains and a == b
    assert all(math.isfinite(v) and v > 0 for v in a.values())
    # the mean over batches equals the mean token loss computed by hand on the same windows
    from mixlab.train.evaluate import validation_windows

    w = validation_windows(tiny_corpus, seq_len=32, batches=2, batch_size=4, seed=0)["code"]
    assert w.shape == (8, 33)
    with torch.no_grad():
        manual = model.token_losses(w[:, :-1], w[:, 1:]).double().mean().item()
    assert a["code"] == pytest.approx(manual, rel=1e-6)


def test_bad_configs_give_clear_errors(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="unknown model preset 'giant'"):
        Trainer(_cfg(tmp_path, model="giant"), corpus=tiny_corpus)
    with pytest.raises(ConfigError, match="tokens: .*positive"):
        TrainConfig.parse({"tokens": 0})
    with pytest.raises(ConfigError, match="less than one optimizer step"):
        Trainer(_cfg(tmp_path, tokens=100), corpus=tiny_corpus)
    with pytest.raises(ConfigError, match=r"unknown domain\(s\) \['wiki'\]"):
        Trainer(_cfg(tmp_path, mixture={"wiki": 0.5, "code": 0.5}), corpus=tiny_corpus)
    with pytest.raises(ConfigError, match="lr_typo: unknown field"):
        TrainConfig.parse({"lr_typo": 1})
    with pytest.raises(ConfigError, match="corpus is required"):
        Trainer(_cfg(tmp_path))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_corpus, tmp_path):
    trainer = Trainer(_cfg(tmp_path, eval_interval=5), corpus=tiny_corpus)
    trainer.train_until(10)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    original = trainer.model.forward

    def poisoned(x, y=None):
        logits, loss = original(x, y)
        return logits, loss * float("nan")

    trainer.model.forward = poisoned
    with pytest.raises(TrainingError, match=r"loss became nan at step 11.*last good checkpoint"):
        trainer.train_until(20)
    latest = ckpt_io.latest_checkpoint(trainer.ckpt_root)
    assert latest.name == "step-00000010"
    assert RunStore(tmp_path / "ws").get_run(trainer.run_id)["status"] == "failed"
    # the model was not updated by the NaN step, and a fresh trainer resumes from step 10
    assert all(torch.equal(good[k], v) for k, v in trainer.model.state_dict().items())
    again = Trainer(_cfg(tmp_path, eval_interval=5), corpus=tiny_corpus)
    assert again.resumed_from == 10 and again.step == 10


def test_schedule_and_stagewise_api(tiny_corpus, tmp_path):
    cfg = _cfg(tmp_path, mixture={"english": 1.0}, tokens=32 * 4 * 20)
    trainer = Trainer(cfg, corpus=tiny_corpus)
    trainer.train_until(8)
    assert trainer.step == 8
    assert trainer.sampler.domain_counts()["code"] == 0
    trainer.set_schedule(Mixture({"code": 1.0}))
    trainer.train_until(12)
    counts = trainer.sampler.domain_counts()
    assert counts == {"english": 32, "code": 16, "arithmetic": 0, "noise": 0}
    saved = RunArtifacts(trainer.run_dir).schedule()  # the run directory follows the live schedule
    assert saved == trainer.sampler.schedule and saved.stages[1].start_step == 8
    path = trainer.save_checkpoint()
    assert path.name == "step-00000012"
    # a new trainer of the same config resumes with the changed schedule
    again = Trainer(cfg, corpus=tiny_corpus)
    assert again.step == 12
    assert again.sampler.schedule.mixture_at(12).to_dict() == {"code": 1.0}
    with pytest.raises(ConfigError, match="unknown domain"):
        again.set_schedule(Mixture({"wiki": 1.0}))
    result = again.fit()
    assert result.steps == 20


def test_schedule_in_config(tiny_corpus, tmp_path):
    sched = [{"start_step": 0, "mixture": {"noise": 1.0}}, {"start_step": 5, "mixture": {"english": 1.0}}]
    trainer = Trainer(_cfg(tmp_path, mixture=sched, tokens=32 * 4 * 10), corpus=tiny_corpus)
    assert isinstance(trainer.sampler.schedule, Schedule)
    trainer.fit()
    assert trainer.sampler.domain_counts() == {"english": 20, "code": 0, "arithmetic": 0, "noise": 20}


def test_lr_schedules():
    kw = dict(total_steps=100, lr=1.0, min_lr=0.1, warmup=10)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(99, **kw) == pytest.approx(0.1)
    assert lr_at(54, **kw) == pytest.approx(0.55, abs=0.01)
    assert lr_at(50, schedule="constant", **kw) == 1.0
    wsd = [lr_at(s, schedule="wsd", decay_frac=0.2, **kw) for s in range(100)]
    assert wsd[79] == 1.0 and wsd[80] < 1.0 and wsd[99] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(wsd[10:], wsd[11:], strict=False))


def test_hf_model_trains_through_trainer(tiny_corpus, tmp_path):
    spec = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}
    result = Trainer(_cfg(tmp_path, model=spec, tokens=32 * 4 * 20), corpus=tiny_corpus).fit()
    first, last = result.train_losses[1], result.train_losses[20]
    assert last < first - 0.5
    from mixlab.train import load_trained_model

    model, cfg, step = load_trained_model(result.run_dir)
    assert step == 20 and cfg.model == spec
    again = evaluate_domains(model, tiny_corpus, seq_len=32, batches=2, batch_size=4, seed=0)
    assert again == pytest.approx(result.final, rel=1e-6)


def test_proxy_runner_trains_then_reuses(tiny_corpus, tmp_path, monkeypatch):
    from mixlab.proxy import ProxyRunner

    runner = LocalProxyRunner(tiny_corpus, model="nano-100k", seq_len=32, batch_size=4, lr=3e-3,
                              workspace=tmp_path / "ws", eval_batches=1)
    assert isinstance(runner, ProxyRunner)
    mix = Mixture({"english": 0.5, "code": 0.5})
    res = runner.train(mix, tokens=32 * 4 * 12, eval_every=4)
    assert sorted(res.curve) == [4, 8, 12] and set(res.final) == set(tiny_corpus.domains)
    assert res.tokens == 32 * 4 * 12 and res.flops > 0

    import mixlab.train.trainer as trainer_mod

    def boom(*a, **k):
        raise AssertionError("a finished proxy run must be reused, not retrained")

    monkeypatch.setattr(trainer_mod.Trainer, "fit", boom)
    again = runner.train(mix, tokens=32 * 4 * 12, eval_every=4)
    assert again.run_id == res.run_id and again.curve == res.curve and again.tokens == res.tokens
    with pytest.raises(AssertionError, match="reused"):
        runner.train(mix, tokens=32 * 4 * 12, eval_every=4, seed=1)


def test_loss_decreases_on_the_builtin_corpus(tmp_path):
    from mixlab.data import builtin_corpus

    corpus = builtin_corpus()
    trainer = Trainer(_cfg(tmp_path, tokens=32 * 4 * 30, eval_interval=30, eval_batches=1), store=False,
                      corpus=corpus)
    before = trainer.evaluate()
    result = trainer.fit()
    assert set(result.final) == set(corpus.domains)
    assert sum(result.final.values()) / len(result.final) < sum(before.values()) / len(before) - 1.0


def test_run_directory_holds_the_one_curve(tiny_corpus, tmp_path):
    result = Trainer(_cfg(tmp_path, tokens=32 * 4 * 20), corpus=tiny_corpus).fit()
    run = RunArtifacts(result.run_dir)
    curve = run.curve()
    assert curve.val == result.curve and curve.train == result.train_losses and curve.tokens_per_step == 128
    assert run.result() == {"run_id": result.run_id, "steps": 20, "tokens": result.tokens, "flops": result.flops,
                            "seconds": result.seconds, "final": result.final}
    state = ckpt_io.read_state(ckpt_io.latest_checkpoint(result.run_dir / "checkpoints"))
    assert "curve" not in state and "train_losses" not in state  # checkpoints keep what resuming needs


def test_resumes_a_run_directory_of_the_older_layout(tiny_corpus, tmp_path):
    """Runs written before curve.json carried their curve in the checkpoint: they resume to the same curve."""
    whole = Trainer(_cfg(tmp_path / "a", tokens=32 * 4 * 20), corpus=tiny_corpus).fit()
    cfg = _cfg(tmp_path / "b", tokens=32 * 4 * 20)
    first = Trainer(cfg, corpus=tiny_corpus)
    first.train_until(10)
    first.close()
    run = RunArtifacts(first.run_dir)
    saved = run.curve()
    ckpt = ckpt_io.latest_checkpoint(first.ckpt_root)
    state = ckpt_io.read_state(ckpt)
    state["curve"] = {str(k): v for k, v in saved.val.items()}
    state["train_losses"] = {str(k): v for k, v in saved.train.items()}
    (ckpt / "state.json").write_text(json.dumps(state))
    (run.root / "curve.json").unlink()
    result = Trainer(cfg, corpus=tiny_corpus).fit()
    assert result.curve == whole.curve and result.train_losses == whole.train_losses
    assert run.curve().val == whole.curve
