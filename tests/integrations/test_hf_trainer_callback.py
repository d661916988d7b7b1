"""The HF mixture dataset and the schedule callback inside a real (tiny) ``transformers.Trainer`` run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from mixlab import ConfigError, Mixture, Schedule
from mixlab.influence import GroupInfluence, measure_group_influence
from mixlab.integrations.hf import MixtureScheduleCallback, MixtureStream, mixture_dataset
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.pipeline.dynamic import PipelineConfig, run_pipeline
from mixlab.pipeline.stages import StageRecord

transformers = pytest.importorskip("transformers")
pytest.importorskip("datasets")
pytest.importorskip(
    "accelerate", reason="transformers.Trainer needs accelerate (pip install 'accelerate>=1.1')"
)

SEQ, BATCH = 32, 4


def _model(vocab_size: int):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, n_positions=SEQ, vocab_size=vocab_size, resid_pdrop=0.0, embd_pdrop=0.0,
        bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
        attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg)


def _trainer(tmp_path, corpus, stream, callback, steps: int, eval_dataset=None, **kw):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=stream.grad_accum,
        learning_rate=3e-3,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        **({"warmup_steps": 0} | kw),
    )
    return transformers.Trainer(
        model=_model(corpus.vocab_size),
        args=args,
        train_dataset=stream.to_hf_dataset(),
        eval_dataset=eval_dataset,
        callbacks=[callback],
    )


def test_dataset_yields_sampler_sequences(tiny_corpus) -> None:
    ds, stream = mixture_dataset(tiny_corpus, {"code": 0.5, "arithmetic": 0.5}, seq_len=SEQ, batch_size=BATCH)
    rows = [row for _, row in zip(range(3 * BATCH), ds, strict=False)]
    assert {r["domain"] for r in rows} <= {"code", "arithmetic"}
    assert all(len(r["input_ids"]) == SEQ and r["labels"] == r["input_ids"] for r in rows)
    # the examples are exactly the sampler's stream (same seed, same mixture)
    from mixlab.data import MixtureSampler

    ref = MixtureSampler(tiny_corpus, {"code": 0.5, "arithmetic": 0.5}, seq_len=SEQ, batch_size=BATCH)
    for b in range(3):
        batch = ref.next_batch()
        for i in range(BATCH):
            row = rows[b * BATCH + i]
            assert row["input_ids"] == batch.input_ids[i].tolist()
            assert row["domain"] == tiny_corpus.domains[int(batch.domain_ids[i])]
    shifted = MixtureStream(tiny_corpus, {"code": 1.0}, seq_len=SEQ, batch_size=2, labels="shifted")
    ex = next(shifted.examples())
    assert list(ex["labels"][:-1]) == list(ex["input_ids"][1:])


def test_static_schedule_switches_at_the_boundary(tiny_corpus, tmp_path) -> None:
    sched = Schedule.from_pairs([(0, {"english": 1.0}), (4, {"code": 0.5, "arithmetic": 0.5})])
    stream = MixtureStream(tiny_corpus, Mixture({"noise": 1.0}), seq_len=SEQ, batch_size=BATCH)
    callback = MixtureScheduleCallback(stream, sched, out_dir=tmp_path / "run")
    evals = stream.eval_datasets(4)
    _trainer(tmp_path, tiny_corpus, stream, callback, 8, evals, eval_strategy="steps", eval_steps=4).train()
    before, after = stream.counts(0, 4), stream.counts(4, 8)
    assert before == {"english": 4 * BATCH, "code": 0, "arithmetic": 0, "noise": 0}
    assert after["english"] == after["noise"] == 0
    assert after["code"] + after["arithmetic"] == 4 * BATCH and after["code"] > 0 and after["arithmetic"] > 0
    assert [(s.start_step, s.mixture) for s in callback.stages] == [
        (s.start_step, s.mixture) for s in sched.stages
    ]
    from mixlab.report.data import load_report_input

    data = load_report_input(tmp_path / "run")
    assert data.schedule == sched
    assert sorted({(r["step"], r["domain"]) for r in data.metrics}) == [
        (s, d) for s in (4, 8) for d in sorted(tiny_corpus.domains)
    ]
    assert all(np.isfinite(r["loss"]) and r["tokens"] == r["step"] * BATCH * SEQ for r in data.metrics)
    code = {r["step"]: r["loss"] for r in data.metrics if r["domain"] == "code"}
    assert code[8] < code[4]  # stage 1 trains on code


class HardestDomainMixer(Mixer):
    """Test mixer: all weight on the domain where the live model's validation loss is highest."""

    name = "hardest"
    dynamic = True

    def propose(self, ctx: MixingContext) -> Mixture:
        model = ctx.live.model
        self.losses_ = {}
        for d in ctx.domains:
            toks = np.asarray(ctx.corpus.val_tokens(d)[: 4 * (ctx.live.seq_len + 1)], dtype=np.int64)
            x = torch.from_numpy(toks.reshape(4, ctx.live.seq_len + 1))
            with torch.no_grad():
                _, loss = model(x[:, :-1], x[:, 1:])
            self.losses_[d] = float(loss)
        self.seen_step_ = ctx.live.step
        self.live_ = ctx.live
        self.previous_ = ctx.previous
        worst = max(self.losses_, key=self.losses_.get)
        return Mixture({d: float(d == worst) for d in ctx.domains})


def test_dynamic_mixer_switches_live_at_the_boundary(tiny_corpus, tmp_path, caplog) -> None:
    stream = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH)
    mixer = HardestDomainMixer()
    callback = MixtureScheduleCallback(stream, mixer=mixer, boundaries=[5])
    with caplog.at_level(logging.INFO, logger="mixlab.integrations.hf"):
        _trainer(tmp_path, tiny_corpus, stream, callback, steps=9).train()
    assert [s.start_step for s in callback.stages] == [0, 5]
    stage1 = callback.stages[1]
    # chosen on the live model after 4 optimizer steps (the loader reads one micro-batch ahead) ...
    assert stage1.decided_at_step == mixer.seen_step_ == 4
    assert mixer.previous_ == Mixture({"english": 1.0})
    assert (
        mixer.live_.device.type == "cpu" and mixer.live_.total_steps == 9 and mixer.live_.batch_size == BATCH
    )
    # ... after 4 steps of English the model finds English the easiest domain
    assert min(mixer.losses_, key=mixer.losses_.get) == "english"
    worst = max(mixer.losses_, key=mixer.losses_.get)
    assert stage1.mixture[worst] == 1.0 and worst != "english"
    # ... and the stream switched exactly at step 5
    assert stream.counts(0, 5) == {**dict.fromkeys(tiny_corpus.domains, 0), "english": 5 * BATCH}
    assert stream.counts(5, 9) == {**dict.fromkeys(tiny_corpus.domains, 0), worst: 4 * BATCH}
    assert "stage 1 from step 5" in caplog.text


def test_a_boundary_inside_the_warmup_is_warned_about(tiny_corpus, tmp_path, caplog) -> None:
    """The callback names a boundary before the Trainer's warm-up ends, as the pipeline does."""
    stream = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH)
    callback = MixtureScheduleCallback(stream, mixer=HardestDomainMixer(), boundaries=[2, 5])
    with caplog.at_level(logging.WARNING, logger="mixlab.pipeline.stages"):
        _trainer(tmp_path, tiny_corpus, stream, callback, steps=6, warmup_steps=4).train()
    warned = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert len(warned) == 1 and "steps [2]" in warned[0] and "(4 of 6 steps)" in warned[0]


def test_grad_accum_keeps_steps_aligned(tiny_corpus, tmp_path) -> None:
    stream = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH, grad_accum=2)
    callback = MixtureScheduleCallback(stream, mixer=HardestDomainMixer(), boundaries=[3])
    _trainer(tmp_path, tiny_corpus, stream, callback, steps=5).train()
    assert callback.stages[1].start_step == 3
    assert stream.counts(0, 3)["english"] == 3 * 2 * BATCH
    assert stream.counts(3, 5)["english"] == 0


def test_mismatched_arguments_are_explained(tiny_corpus, tmp_path) -> None:
    stream = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH + 1)
    trainer = _trainer(tmp_path, tiny_corpus, stream, MixtureScheduleCallback(stream), steps=2)
    with pytest.raises(ConfigError, match="per_device_train_batch_size=4 but the stream's batch_size=5"):
        trainer.train()
    with pytest.raises(ConfigError, match="need a mixer"):
        MixtureScheduleCallback(stream, boundaries=[3])
    with pytest.raises(ConfigError, match="distinct positive"):
        MixtureScheduleCallback(stream, mixer=HardestDomainMixer(), boundaries=[0])


class InfluenceGreedyMixer(Mixer):
    """Test mixer: measure Group Influence on the live model, weight domains by their positive total."""

    name = "influence-greedy"
    dynamic = True

    def propose(self, ctx: MixingContext) -> Proposal:
        gi = measure_group_influence(
            ctx.live.model, ctx.corpus, tokens_per_domain=2 * 4 * (ctx.live.seq_len + 1), seq_len=ctx.live.seq_len,
            batch_size=4, preconditioner="adam", optimizer=ctx.live.optimizer, seed=0,
        )  # fmt: skip
        self.influence_ = gi
        total = {
            d: max(0.0, float(v)) + 1e-3 for d, v in zip(gi.train_domains, gi.matrix.sum(axis=1), strict=True)
        }
        return Proposal(Mixture.from_weights(total), influence=gi)


def test_group_influence_on_the_live_model_is_recorded(tiny_corpus, tmp_path) -> None:
    stream = MixtureStream(tiny_corpus, {"english": 0.5, "code": 0.5}, seq_len=SEQ, batch_size=BATCH)
    mixer = InfluenceGreedyMixer()
    callback = MixtureScheduleCallback(stream, mixer=mixer, boundaries=[4], out_dir=tmp_path / "run")
    _trainer(tmp_path, tiny_corpus, stream, callback, steps=6).train()
    stage1 = callback.stages[1]
    assert stage1.start_step == 4 and stage1.influence is not None
    assert stage1.influence is mixer.influence_ and stage1.influence.train_domains == tiny_corpus.domains
    assert np.isfinite(stage1.influence.matrix).all()
    assert stage1.mixture == stream.schedule.mixture_at(4)
    after = stream.counts(4, 6)
    assert sum(after.values()) == 2 * BATCH
    from mixlab.report.data import load_report_input

    data = load_report_input(tmp_path / "run")
    assert [s.start_step for s in data.schedule.stages] == [0, 4]
    (inf,) = data.influence
    assert inf.stage == 1 and inf.step == 4
    np.testing.assert_allclose(inf.matrix, mixer.influence_.matrix)


def test_tikmix_d_chooses_the_next_stage_in_a_trainer_run(tiny_corpus, tmp_path) -> None:
    stream = MixtureStream(tiny_corpus, None, seq_len=SEQ, batch_size=BATCH)
    callback = MixtureScheduleCallback(
        stream, mixer="tikmix-d", mixer_params={"tokens_per_domain": 2 * 4 * (SEQ + 1)}, boundaries=[4],
        out_dir=tmp_path / "run",
    )  # fmt: skip
    _trainer(tmp_path, tiny_corpus, stream, callback, steps=6).train()
    natural = Mixture.from_weights({d: float(n) for d, n in tiny_corpus.token_counts().items()})
    assert callback.stages[0].mixture == natural
    stage1 = callback.stages[1]
    assert stage1.start_step == 4 and stage1.decided_at_step == 3
    assert stage1.influence is not None and stage1.influence.matrix.shape[0] == len(tiny_corpus.domains)
    assert stage1.solver["solver"] == "slsqp" and len(stage1.measurements) == 1
    assert stage1.compute.get("flops", 0) > 0
    assert stream.schedule.mixture_at(4) == stage1.mixture
    assert (tmp_path / "run" / "stages" / "stage_1" / "influence.json").is_file()


def test_the_callback_and_the_pipeline_record_stages_alike(tiny_corpus, tmp_path) -> None:
    """Both drivers go through the one stage engine: the same record type and fields, the same files."""
    params = {"tokens_per_domain": 2 * 4 * (SEQ + 1)}
    stream = MixtureStream(tiny_corpus, None, seq_len=SEQ, batch_size=BATCH)
    callback = MixtureScheduleCallback(stream, mixer="tikmix-d", mixer_params=params, boundaries=[4],
                                       out_dir=tmp_path / "hf-run")
    _trainer(tmp_path, tiny_corpus, stream, callback, steps=6).train()
    train = {"corpus": str(tiny_corpus.root), "model": "nano-100k", "tokens": 8 * BATCH * SEQ, "seq_len": SEQ,
             "batch_size": BATCH, "eval_batches": 1, "seed": 0, "workspace": str(tmp_path / "ws"),
             "progress": False, "max_epochs": 100.0, "on_exceed": "warn"}
    res = run_pipeline(PipelineConfig(train=train, mixer="tikmix-d", mixer_params=params), corpus=tiny_corpus)
    hf, pipe = callback.stages[1], res.stages[1]
    assert type(hf) is type(pipe) is StageRecord
    assert set(pipe.to_dict()) - set(hf.to_dict()) == {"val_losses", "domain_counts"}  # the pipeline evaluates
    assert set(hf.to_dict()) <= set(pipe.to_dict())
    for rec in (hf, pipe):
        assert rec.method == "tikmix-d" and isinstance(rec.influence, GroupInfluence)
        assert rec.influence.train_domains == tiny_corpus.domains and rec.solver["success"]
        assert rec.compute["flops"] == pytest.approx(rec.influence.flops) and len(rec.measurements) == 1
        assert set(rec.random_state) == {"torch_cpu"}  # CUDA's too where CUDA is present
    for run_dir in (tmp_path / "hf-run", res.run_dir):
        d = run_dir / "stages" / "stage_1"
        assert StageRecord.from_dict(json.loads((d / "record.json").read_text())).influence.shape == (4, 4)
        assert {p.name for p in d.iterdir()} == {"record.json", "mixture.json", "influence.json"}


class FixedMixer(Mixer):
    """Test mixer: a fixed answer; optionally leaves gradients and draws random numbers like a
    careless influence pass would."""

    name = "fixed"
    dynamic = True

    def __init__(self, messy: bool) -> None:
        self.messy = messy

    def propose(self, ctx: MixingContext) -> Mixture:
        if self.messy:
            x = torch.randint(0, 200, (2, SEQ + 1))
            _, loss = ctx.live.model(x[:, :-1], x[:, 1:])
            (loss * 1e3).backward()
            torch.rand(100)
        return Mixture({"code": 1.0})


def test_mixer_side_effects_do_not_leak_into_training(tiny_corpus, tmp_path) -> None:
    finals = []
    for messy in (False, True):
        stream = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH)
        callback = MixtureScheduleCallback(stream, mixer=FixedMixer(messy), boundaries=[3])
        trainer = _trainer(tmp_path / str(messy), tiny_corpus, stream, callback, steps=5)
        trainer.train()
        finals.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=0)


def test_callback_measures_influence_for_the_mixer(tiny_corpus, tmp_path) -> None:
    from mixlab.mixers import get_mixer

    mixer = get_mixer("tikmix-d", tokens_per_domain=10**9)  # would be far too slow if it measured itself
    stream = MixtureStream(tiny_corpus, None, seq_len=SEQ, batch_size=BATCH)
    callback = MixtureScheduleCallback(
        stream, mixer=mixer, boundaries=[3], influence={"tokens_per_domain": 2 * 4 * (SEQ + 1)}
    )
    _trainer(tmp_path, tiny_corpus, stream, callback, steps=4).train()
    stage1 = callback.stages[1]
    assert stage1.influence.preconditioner.startswith("adam")
    assert stage1.compute["tokens"] == stage1.influence.tokens < 10**6  # the callback's budget, not the mixer's
    assert stage1.compute["flops"] == pytest.approx(stage1.influence.flops)
    assert stream.schedule.mixture_at(3) == stage1.mixture


def test_distributed_and_worker_settings_are_checked(tiny_corpus) -> None:
    from types import SimpleNamespace

    def args(**kw):
        base = dict(per_device_train_batch_size=BATCH, gradient_accumulation_steps=1, world_size=1,
                    dataloader_num_workers=0, accelerator_config=SimpleNamespace(dispatch_batches=None))
        return SimpleNamespace(**{**base, **kw})  # fmt: skip

    two = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH, rank=1, world_size=2)
    one = MixtureStream(tiny_corpus, {"english": 1.0}, seq_len=SEQ, batch_size=BATCH, rank=0, world_size=1)
    with pytest.raises(ConfigError, match="dispatch_batches"):
        MixtureScheduleCallback(two)._check_args(args(world_size=2))
    with pytest.raises(ConfigError, match="built for world_size=1"):
        MixtureScheduleCallback(one)._check_args(args(world_size=2))
    with pytest.raises(ConfigError, match="dynamic mixer under torchrun"):
        cb = MixtureScheduleCallback(two, mixer=HardestDomainMixer(), boundaries=[2])
        cb._check_args(args(world_size=2, accelerator_config=SimpleNamespace(dispatch_batches=False)))
    with pytest.raises(ConfigError, match="dataloader_num_workers > 0 with a dynamic mixer"):
        MixtureScheduleCallback(one, mixer=HardestDomainMixer(), boundaries=[2])._check_args(
            args(dataloader_num_workers=2)
        )
    one.to_hf_dataset(num_workers=2)
    with pytest.raises(ConfigError, match=r"built with stream.to_hf_dataset\(num_workers=2\)"):
        MixtureScheduleCallback(one)._check_args(args())
    assert two.rank == 1 and two.sampler.world_size == 2
