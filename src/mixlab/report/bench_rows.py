"""One row of a benchmark table: what ``mixlab bench`` writes (``bench.json``, ``bench.csv``) and what
``mixlab report`` reads back, as one typed record.

The bench (:mod:`mixlab.pipeline.bench`) builds a :class:`BenchRow` per method and writes
:meth:`BenchRow.to_dict`; the report parses each object of a bench file with :meth:`BenchRow.from_json`.
Every field but ``method`` may be missing from a file (older versions and hand-written files carry
fewer), and keys this version does not know are kept as they are, so reading and writing a row loses
nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mixlab.errors import DataError

RESULT_KEYS: tuple[str, ...] = (
    "method",
    "avg_loss",
    "avg_loss_std",
    "worst_loss",
    "worst_loss_std",
    "target_loss",
    "target_loss_std",
    "choose_flops",
    "choose_tokens",
    "choose_seconds",
    "seeds",
    "delta_vs_uniform",
    "delta_vs_uniform_ci95",
)
"""The keys every row the bench writes carries, in this order (the CSV's columns before the per-domain
losses); the details follow them in the JSON."""


AVG_STATIC_SUFFIX = ":avg-static"
"""The suffix of the control row that trains a dynamic method's time-averaged mixture statically."""
NATURAL_THEN_UNIFORM_SUFFIX = ":natural-then-uniform"
"""The suffix of the control row that trains natural, then uniform, with the method's boundaries."""


class BenchRow(BaseModel):
    """One method's result in a benchmark: losses over the paired seeds, the compute spent choosing,
    the paired difference to uniform, and the details behind them.

    Losses are validation losses in nats per token, as mean over seeds with the population std
    (``<key>_std``). ``target_loss`` is the track's objective ``sum_j c_j L_j``; ``delta_vs_uniform``
    the mean per-seed difference of ``target_loss`` to the uniform row and ``delta_vs_uniform_ci95``
    its two-sided 95% t-interval (``[nan, nan]`` with one seed).
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    method: str
    """The method's registry name, a variant ``NAME[key=value,...]``, a control ``NAME:avg-static`` /
    ``NAME:natural-then-uniform``, or ``oracle``."""
    avg_loss: float | None = None
    """Mean over training domains of the final validation loss."""
    avg_loss_std: float | None = None
    worst_loss: float | None = None
    """The worst training domain's final validation loss."""
    worst_loss_std: float | None = None
    target_loss: float | None = None
    """The track's objective: the weighted target loss (target track) or the mean over domains."""
    target_loss_std: float | None = None
    choose_flops: float | None = None
    """FLOPs spent choosing the mixture (proxy runs, influence passes, oracle selection runs)."""
    choose_tokens: int | None = None
    """Tokens spent choosing the mixture."""
    choose_seconds: float | None = None
    """Wall seconds spent choosing the mixture."""
    seeds: int | None = None
    """Target runs (paired seeds) behind the means."""
    delta_vs_uniform: float | None = None
    delta_vs_uniform_ci95: list[float] | None = None
    track: str | None = None
    """``target`` or ``balanced``."""
    target_per_seed: list[float] | None = None
    """``target_loss`` of each seed's run, in ``seed_list`` order (the paired differences' input)."""
    seed_list: list[int] | None = None
    dynamic: bool | None = None
    """Whether the method re-chose the mixture during the target run (TiKMiX-D/-M)."""
    mixture: dict[str, float] | None = None
    """The static mixture trained on (None for a schedule)."""
    schedule: Any = None
    """The schedule trained on (the first seed's, for a dynamic method), as the mixture module writes it."""
    per_domain: dict[str, float] | None = None
    """Mean over seeds of each domain's and target's final loss."""
    run_ids: list[str] | None = None
    """The target runs in the workspace's run store, one per seed."""
    schedules: list[Any] | None = None
    """Dynamic methods: each seed's schedule."""
    control_of: str | None = None
    """Control rows: the dynamic method they control for."""
    oracle_scores: list[float] | None = None
    """The oracle row: each candidate's objective on the selection seed."""
    oracle_candidates: list[dict[str, float]] | None = None
    """The oracle row: the static mixtures it chose from."""
    headroom: float | None = None
    """The oracle row: uniform's ``target_loss`` minus the oracle's."""
    seed_sd: float | None = None
    """The oracle row: the seed SD, pooled over every row that trained one fixed schedule on every
    seed (uniform, the oracle, the static methods, the natural-then-uniform controls)."""
    seed_sd_df: int | None = None
    """The oracle row: the degrees of freedom behind ``seed_sd``."""
    headroom_sd: float | None = None
    """The oracle row: ``headroom`` in seed SDs."""
    seed_sd_two_rows: float | None = None
    """The oracle row: the seed SD from uniform's and the oracle's per-seed losses alone."""
    headroom_sd_two_rows: float | None = None
    """The oracle row: ``headroom`` in ``seed_sd_two_rows``."""

    @property
    def same_schedule_every_seed(self) -> bool:
        """Whether every seed of this row trained the same schedule: a static method's choice, the
        oracle's pick and the natural-then-uniform control do; a dynamic method re-chooses per seed
        and an ``:avg-static`` control trains each seed's own time-averaged mixture. The scatter of
        such a row over seeds is seed noise only (the headroom's seed SD pools it)."""
        return not self.dynamic and not self.method.endswith(AVG_STATIC_SUFFIX)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> BenchRow:
        """The row in the JSON object ``obj``; a bad field is a :class:`~mixlab.errors.DataError`
        naming ``where`` and the field."""
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected an object with 'method', 'avg_loss', ..., got {type(obj).__name__}")
        if "method" not in obj:
            raise DataError(f"{where}: the result has no 'method'")
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise DataError(f"{where}: {field}: {err['msg']} (got {err.get('input')!r})") from None

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON object: the fields that were set (the result keys first), then any keys
        this version does not know."""
        return self.model_dump(exclude_unset=True)
