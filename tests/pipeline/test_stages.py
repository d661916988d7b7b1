"""The stage engine: one decision at a boundary (proposal, record, random states), records that
round-trip and load in their older layouts, and a resumed pipeline that replays a recorded boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixlab.errors import MixlabError
from mixlab.influence import GroupInfluence
from mixlab.mixers.base import Mixer, MixingContext, Proposal
from mixlab.mixture import Mixture, Schedule
from mixlab.pipeline.dynamic import DynamicPipeline, PipelineConfig
from mixlab.pipeline.stages import LiveState, RandomState, StageEngine, StageRecord

DOMAINS = ["a", "b", "c"]
GI = GroupInfluence(
    matrix=[[1.0, -2.0], [3.0, 4.0], [5.0, 6.5]], stderr=[[0.1, float("nan")], [0.2, 0.2], [0.3, 0.3]],
    train_domains=DOMAINS, target_domains=["a", "t"], tokens=96, flops=1e6, stability=0.75,
    half_matrices=np.arange(12.0).reshape(2, 3, 2),
)  # fmt: skip


class MessyMixer(Mixer):
    """Proposes a fixed mixture with an influence matrix, after leaving gradients behind, drawing random
    numbers and putting the model in training mode, as a careless influence pass would."""

    name = "messy"
    dynamic = True

    def __init__(self, result: object = None) -> None:
        self.result = result

    def propose(self, ctx: MixingContext) -> Proposal:
        model = ctx.live.model
        self.saw_training_ = model.training
        model.train()
        model(torch.randn(2, 3)).sum().backward()
        torch.rand(100)
        ctx.compute.add(flops=5.0, tokens=7, seconds=0.5)
        if self.result is not None:
            return self.result
        return Proposal(Mixture({"a": 0.2, "b": 0.3, "c": 0.5}), influence=GI, solver={"success": True, "fallback": None},
                        measurements=[{"tokens": 96, "seed": 0}])


def _live(model: torch.nn.Module) -> LiveState:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return LiveState(model=model, optimizer=opt, seq_len=8, batch_size=2, step=10, total_steps=40)


def _ctx(live: LiveState) -> MixingContext:
    return MixingContext(domains=DOMAINS, available_tokens=dict.fromkeys(DOMAINS, 100), total_tokens=1000, stage=1,
                         previous=Mixture.uniform(DOMAINS), live=live)


def test_decide_records_the_proposal_and_leaves_no_trace(tmp_path):
    model = torch.nn.Linear(3, 1)
    model.train()
    live = _live(model)
    ctx = _ctx(live)
    ctx.compute.add(flops=100.0)  # spent before this decision: not the decision's
    engine = StageEngine(MessyMixer(), stages_dir=tmp_path / "stages")
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    record = engine.decide(ctx, live, start_step=10, val_losses={"a": 2.0})
    assert torch.equal(torch.random.get_rng_state(), before)  # random streams untouched
    assert all(p.grad is None for p in model.parameters()) and model.training  # no grads, mode restored
    assert engine.mixer.saw_training_ is False  # the mixer runs in eval mode
    assert record.influence is GI and record.solver["success"] and record.measurements[0]["tokens"] == 96
    assert record.mixture == Mixture({"a": 0.2, "b": 0.3, "c": 0.5}) and record.previous == Mixture.uniform(DOMAINS)
    assert record.compute == {"flops": 5.0, "tokens": 7, "seconds": 0.5}
    assert record.stage == 1 and record.start_step == 10 and record.decided_at_step == 10 and record.method == "messy"
    assert record.random_state == RandomState(before).fingerprint() and record.seconds >= 0
    assert engine.records == [record]
    d = tmp_path / "stages" / "stage_1"
    assert json.loads((d / "mixture.json").read_text())["mixture"] == record.mixture.to_dict()
    saved = json.loads((d / "influence.json").read_text())
    assert saved["step"] == 10 and GroupInfluence.from_dict(saved).matrix.tolist() == GI.matrix.tolist()


def test_a_bare_mixture_is_wrapped_and_anything_else_refused():
    live = _live(torch.nn.Linear(3, 1))
    record = StageEngine(MessyMixer(Mixture.uniform(DOMAINS))).decide(_ctx(live), live, start_step=10)
    assert record.mixture == Mixture.uniform(DOMAINS) and record.influence is None and record.solver is None
    with pytest.raises(MixlabError, match="returned dict"):
        StageEngine(MessyMixer({"a": 1.0})).decide(_ctx(live), live, start_step=10)
    two = Schedule.from_pairs([(0, Mixture.uniform(DOMAINS)), (5, Mixture({"a": 1.0, "b": 0.0, "c": 0.0}))])
    with pytest.raises(MixlabError, match="2-stage schedule"):
        StageEngine(MessyMixer(Proposal(schedule=two))).decide(_ctx(live), live, start_step=10)
    assert all(p.grad is None for p in live.model.parameters())  # cleaned up after a failure too
    with pytest.raises(MixlabError, match="exactly one"):
        Proposal()
    assert Proposal.of(Mixture.uniform(DOMAINS)).as_schedule() == Schedule.constant(Mixture.uniform(DOMAINS))


def test_a_saved_record_round_trips(tmp_path):
    live = _live(torch.nn.Linear(3, 1))
    engine = StageEngine(MessyMixer(), stages_dir=tmp_path)
    record = engine.decide(_ctx(live), live, start_step=10, val_losses={"a": 2.5}, domain_counts={"a": 3})
    data = json.loads(json.dumps(record.to_dict()))
    back = StageRecord.from_dict(data | {"future_key": [1, 2]})
    assert back.to_dict() == data | {"future_key": [1, 2]}  # unknown keys are kept
    assert isinstance(back.influence, GroupInfluence) and np.isnan(back.influence.stderr[0, 1])
    assert back.influence.half_matrices.shape == (2, 3, 2) and back.influence.stability == 0.75
    assert StageEngine(MessyMixer(), stages_dir=tmp_path).recorded(1).to_dict() == data


def test_older_records_still_load():
    # a pipeline record from before the engine (no compute, no random states)
    old = {"stage": 1, "start_step": 24, "mixture": {"a": 0.5, "b": 0.5}, "method": "tikmix-d",
           "previous": {"a": 1.0, "b": 0.0}, "seconds": 1.5, "solver": {"status": 0}}
    rec = StageRecord.from_dict(old)
    assert rec.previous == Mixture({"a": 1.0, "b": 0.0}) and rec.compute is None and rec.to_dict() == old
    # the HF callback's record: "index", and an influence matrix stored targets x training domains
    hf = {"index": 2, "start_step": 5, "mixture": {"a": 1.0}, "decided_at_step": 4, "compute": {"flops": 1.0},
          "influence": {"train_domains": ["a", "b", "c"], "target_domains": ["x", "y"], "layout": "target_x_train",
                        "matrix": [[1, 2, 3], [4, 5, 6]], "stderr": [[0.1, 0.2, 0.3], [0.4, None, 0.6]]}}
    rec = StageRecord.from_dict(hf)
    assert rec.stage == 2 and rec.method == "given" and rec.decided_at_step == 4
    assert rec.influence.matrix.tolist() == [[1, 4], [2, 5], [3, 6]]  # rows = training domains
    assert rec.influence.stderr[0, 1] == 0.4 and np.isnan(rec.influence.stderr[1, 1])
    assert "layout" not in rec.to_dict()["influence"]  # nothing writes the flag any more
    with pytest.raises(MixlabError, match="lacks"):
        StageRecord.from_dict({"stage": 1, "start_step": 3})


class CountingMixer(Mixer):
    """A dynamic mixer that puts all weight on the first domain and counts its calls."""

    name = "counting"
    dynamic = True

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, ctx: MixingContext) -> Mixture:
        self.calls += 1
        return Mixture({d: float(i == 0) for i, d in enumerate(ctx.domains)})


def test_a_resumed_pipeline_replays_the_recorded_boundary(tiny_corpus, tmp_path):
    train = {"corpus": str(tiny_corpus.root), "model": "nano-100k", "tokens": 16 * 4 * 32, "seq_len": 32,
             "batch_size": 4, "eval_batches": 1, "seed": 0, "workspace": str(tmp_path), "progress": False,
             "max_epochs": 100.0, "on_exceed": "warn", "run_name": "resume-me"}
    cfg = PipelineConfig(train=train, mixer="uniform", stages=2)
    first = DynamicPipeline(cfg, corpus=tiny_corpus)
    first.mixer = CountingMixer()
    res = first.run()
    assert first.mixer.calls == 1 and res.stages[1].mixture == Mixture({d: float(d == tiny_corpus.domains[0])
                                                                        for d in tiny_corpus.domains})
    again = DynamicPipeline(cfg, corpus=tiny_corpus)
    again.mixer = CountingMixer()
    res2 = again.run()
    assert again.mixer.calls == 0  # replayed from stages/stage_1/record.json, never decided again
    assert res2.schedule == res.schedule and res2.stages[1].to_dict() == res.stages[1].to_dict()
