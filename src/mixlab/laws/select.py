"""Choose a mixing law and its fitting settings by leave-runs-out cross-validation.

The task a mixing law serves is to predict the loss of a mixture that was never trained. So a law
and its settings are judged the same way, on the given data only: the runs are split into folds
(whole runs, never single points, since a run's points are not independent), each fold's runs are
held out in turn, the law is fitted on the other runs and predicts each held-out run's loss at its
last step, and the score is the mean relative error over those (run, loss domain) points, with the
points where a loss domain's own proportion is 0 skipped (:meth:`LongTable.scored`).

Settings (:data:`~mixlab.laws.registry.REGISTRY`) are searched coordinate-wise: starting from the
defaults, each setting in turn tries its candidates with the others held at their current choice
(one pass), and a candidate replaces the current choice only when its score is lower by more than
its standard error across folds. The defaults are the plain fit, so a setting
moves away from its default only when cross-validation shows a real improvement, not noise. Across laws, :class:`LawSelector` takes the law with the fewest
coefficients whose score is within one standard error of the best law's (the one-standard-error rule
of Hastie, Tibshirani and Friedman, *Elements of Statistical Learning* Sec. 7.10): a richer law is chosen only when cross-validation says it predicts
unseen mixtures better, not when it merely ties.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mixlab.errors import ConfigError, DataError, MixlabError, NotFittedError
from mixlab.laws.registry import REGISTRY, LawSpec, LongTable, fit_spec, get_law
from mixlab.mixture import Mixture, MixtureConstraints

FORMAT = "mixlab.fit-law/1"


def run_folds(n_runs: int, n_folds: int, seed: int) -> list[list[int]]:
    """``min(n_folds, n_runs)`` folds of run indices: ``random.Random(seed).shuffle`` of the sorted
    runs, dealt round-robin (fold ``f`` holds positions ``f, f + K, ...``)."""
    ids = list(range(n_runs))
    random.Random(seed).shuffle(ids)
    k = min(int(n_folds), n_runs)
    return [sorted(ids[f::k]) for f in range(k)] if k >= 2 else []


@contextlib.contextmanager
def quiet_fits() -> Iterator[None]:
    """Silence the laws' per-fit warnings (zero proportions left out, ...) while many fits run; the
    final fit on all runs is where a caller sees them."""
    logger = logging.getLogger("mixlab.laws")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _beats(row: Mapping[str, Any], ref: Mapping[str, Any]) -> bool:
    """``row``'s score is lower than ``ref``'s by more than ``row``'s standard error across folds."""
    se = row["se"] if np.isfinite(row["se"]) else 0.0
    return bool(row["mre"] + se < ref["mre"])


def _score(table: LongTable, pred: np.ndarray) -> np.ndarray:
    """Relative errors (%) of ``pred`` at the scored points of ``table`` (flattened)."""
    ok = table.scored()
    return 100.0 * np.abs(pred[ok] - table.Y[ok]) / table.Y[ok]


class LawSelector:
    """A mixing law chosen, with its settings, by leave-runs-out cross-validation (module docstring).

    Parameters
    ----------
    law : ``"auto"`` (choose among ``candidates``) or a registered law's name (only its settings are
        chosen).
    candidates : the laws ``"auto"`` chooses among (default: every registered law).
    fixed : settings held at the given values, not searched (explicit options: ``{"share_beta": True}``);
        they apply to each law that has them.
    n_folds, seed : the folds (:func:`run_folds`); ``n_folds < 2`` fits without cross-validation
        (the first law at its defaults plus ``fixed``).
    search : ``False`` fits the defaults (plus ``fixed``) and only scores them.
    params : other estimator arguments passed as given to the law(s) that take them (``loss``,
        ``n_init``, ...), never searched.

    Fitted attributes: ``law_`` (name), ``settings_``, ``estimator_`` (the chosen law and settings
    fitted on every run), ``cv_`` (one row per evaluated (law, settings): ``law``, ``settings``,
    ``mre`` (%), ``se``, ``fold_mre``, ``n_points``, ``error`` or ``None``), ``folds_`` (run indices),
    ``oof_`` (the chosen configuration's out-of-fold predictions at each run's last step, ``[runs, m]``),
    ``skipped_`` (law -> why it was not considered), ``selected_by_``, ``best_`` (law -> its best
    ``cv_`` row: what ``law=<that law>`` would have chosen, on the same folds).
    """

    def __init__(
        self,
        law: str = "auto",
        candidates: Sequence[str] | None = None,
        fixed: Mapping[str, Any] | None = None,
        n_folds: int = 5,
        seed: int = 1,
        search: bool = True,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.law = law
        self.candidates = candidates
        self.fixed = fixed
        self.params = params
        self.n_folds = n_folds
        self.seed = seed
        self.search = search

    def _laws(self) -> list[LawSpec]:
        if self.law != "auto":
            return [get_law(self.law)]
        names = list(self.candidates) if self.candidates is not None else list(REGISTRY)
        return sorted((get_law(n) for n in names), key=lambda s: s.rank)

    def fit(self, table: LongTable) -> LawSelector:
        """Choose and fit on ``table`` (a :class:`LongTable`); uses no data outside it."""
        if not isinstance(table, LongTable):
            raise ConfigError("LawSelector.fit takes a LongTable (LongTable.from_arrays or LongTable.from_wide)")
        fixed = dict(self.fixed or {})
        specs = self._laws()
        known = set(itertools.chain.from_iterable(s.grid for s in specs))
        unknown = [k for k in fixed if k not in known]
        if unknown:
            raise ConfigError(f"unknown law setting(s) {unknown}; settings of {[s.name for s in specs]}: {sorted(known)}")
        self.skipped_: dict[str, str] = {}
        usable = []
        for spec in specs:
            why = spec.check(table)
            if why is None:
                usable.append(spec)
            else:
                self.skipped_[spec.name] = why
        if not usable:
            raise DataError("no mixing law can be fitted on this table: " + "; ".join(
                f"{n} {why}" for n, why in self.skipped_.items()))
        self.folds_ = run_folds(table.n_runs, self.n_folds, self.seed)
        self.cv_: list[dict[str, Any]] = []
        self.best_: dict[str, dict[str, Any]] = {}
        self._oof: dict[int, np.ndarray] = {}
        if not self.folds_:
            spec = usable[0]
            self._finish(table, spec, {k: v for k, v in fixed.items() if k in spec.grid}, "no cross-validation (fewer than 2 runs or folds)")
            return self
        best_per_law = []
        for spec in usable:
            best = self._search(table, spec, {k: v for k, v in fixed.items() if k in spec.grid})
            if best is not None:
                best_per_law.append((spec, best))
                self.best_[spec.name] = best
        if not best_per_law:
            # too few runs to leave any out: the first law that fits on all runs, at its defaults
            errors = "; ".join(dict.fromkeys(f"{r['law']}: {r['error']}" for r in self.cv_ if r["error"]))
            for spec in usable:
                settings = {k: v for k, v in fixed.items() if k in spec.grid}
                try:
                    self._finish(table, spec, settings, f"its defaults: no law could be cross-validated ({errors})")
                    return self
                except (MixlabError, FloatingPointError) as exc:
                    errors += f"; {spec.name} on all runs: {exc}"
            raise DataError(f"no mixing law could be fitted: {errors}")
        spec, row = self._one_se_choice(best_per_law)
        how = "cross-validation over runs" + (" (one-standard-error rule)" if len(best_per_law) > 1 else "")
        self._finish(table, spec, row["settings"], how, oof=self._oof[id(row)])
        return self

    def _finish(self, table, spec, settings, how, oof=None) -> None:
        self.estimator_ = fit_spec(spec, table, settings, self._params(spec))
        self.law_ = spec.name
        self.settings_ = {**spec.defaults(), **settings}
        self.selected_by_ = how
        self.oof_ = oof
        self.oof_rows_ = table.last_rows()

    def _params(self, spec: LawSpec) -> dict[str, Any]:
        """The ``params`` that ``spec``'s estimator takes."""
        names = inspect.signature(spec.estimator).parameters
        return {k: v for k, v in (self.params or {}).items() if k in names}

    def _search(self, table: LongTable, spec: LawSpec, fixed: dict[str, Any]) -> dict[str, Any] | None:
        """Coordinate search over ``spec``'s settings (module docstring); the best row, or ``None``."""
        current = {**spec.defaults(), **fixed}
        seen: dict[tuple, dict[str, Any]] = {}

        def run(settings):
            key = tuple(sorted(settings.items()))
            if key not in seen:
                seen[key] = self._evaluate(table, spec, settings)
            return seen[key]

        best = run(current)
        if self.search:
            for name, values in spec.grid.items():
                if name in fixed:
                    continue
                for v in values:
                    row = run({**current, name: v})
                    if row["error"] is None and (best["error"] is not None or _beats(row, best)):
                        best, current = row, dict(row["settings"])
        return None if best["error"] is not None else best

    def _evaluate(self, table: LongTable, spec: LawSpec, settings: dict[str, Any]) -> dict[str, Any]:
        """Cross-validated score of one (law, settings)."""
        fold_mre, errs = [], []
        oof = np.full((table.n_runs, len(table.loss_domains)), np.nan)
        error = None
        for fold in self.folds_:
            train = table.take_runs([u for u in range(table.n_runs) if u not in fold])
            held = table.take_runs(fold)
            rows = held.last_rows()
            try:
                with quiet_fits():
                    est = fit_spec(spec, train, settings, self._params(spec))
                    pred = np.asarray(est.predict(held.R[rows], held.steps[rows]), dtype=float)
            except (MixlabError, FloatingPointError, np.linalg.LinAlgError) as exc:
                error = f"fold {len(fold_mre) + 1}: {exc}"
                break
            held_last = LongTable(held.R[rows], held.steps[rows], held.Y[rows], np.arange(rows.size),
                                  table.domains, table.loss_domains)
            ok = held_last.scored()
            if not np.all(np.isfinite(pred[ok])):
                error = f"fold {len(fold_mre) + 1}: no finite prediction for a held-out run"
                break
            e = _score(held_last, pred)
            fold_mre.append(float(np.mean(e)) if e.size else np.nan)
            errs.append(e)
            oof[np.asarray(fold)] = pred
        row: dict[str, Any] = {"law": spec.name, "settings": dict(settings), "error": error}
        if error is None:
            allerr = np.concatenate(errs)
            fm = np.array(fold_mre)
            row.update(mre=float(np.mean(allerr)), fold_mre=fm.tolist(), n_points=int(allerr.size),
                       se=float(np.nanstd(fm, ddof=1) / np.sqrt(np.isfinite(fm).sum())) if fm.size > 1 else float("nan"))
        else:
            row.update(mre=float("nan"), fold_mre=[], n_points=0, se=float("nan"))
        self.cv_.append(row)
        self._oof[id(row)] = oof
        return row

    @staticmethod
    def _one_se_choice(best_per_law: list[tuple[LawSpec, dict[str, Any]]]) -> tuple[LawSpec, dict[str, Any]]:
        """The lowest-rank law whose score is within one standard error (across folds) of the best law's."""
        top_spec, top = min(best_per_law, key=lambda t: t[1]["mre"])
        limit = top["mre"] + (top["se"] if np.isfinite(top["se"]) else 0.0)
        for spec, row in sorted(best_per_law, key=lambda t: t[0].rank):
            if spec is top_spec or row["mre"] <= limit:
                return spec, row
        return top_spec, top

    # -- the fitted law ---------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("LawSelector is not fitted yet: call fit() or fit_law() first")

    @property
    def domains_(self) -> list[str]:
        self._check()
        return list(self.estimator_.domains_)

    @property
    def loss_domains_(self) -> list[str]:
        self._check()
        return list(self.estimator_.loss_domains_)

    def predict(self, mixtures: Any, steps: Any) -> np.ndarray:
        """Predicted losses ``[n, m]`` (columns = ``loss_domains_``) of the chosen law."""
        self._check()
        return np.asarray(self.estimator_.predict(mixtures, steps), dtype=float)

    def optimize(
        self, step: float, weights: Mapping[str, float] | None = None, constraints: MixtureConstraints | None = None,
    ) -> Mixture:
        """The chosen law's optimal mixture at ``step`` (its ``optimize``)."""
        self._check()
        return self.estimator_.optimize(step, weights=weights, constraints=constraints)

    def cv_table(self) -> list[dict[str, Any]]:
        """``cv_`` with a ``chosen`` flag, best score first within each law."""
        self._check()
        rows = []
        for r in self.cv_:
            chosen = r["law"] == self.law_ and {**get_law(r["law"]).defaults(), **r["settings"]} == self.settings_
            rows.append({**r, "chosen": chosen})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict again, plus the cross-validation record (plain JSON)."""
        self._check()
        return {
            "format": FORMAT, "law": self.law_, "settings": _plain(self.settings_), "selected_by": self.selected_by_,
            "requested": self.law, "domains": self.domains_, "loss_domains": self.loss_domains_,
            "state": self.estimator_.to_state(), "folds": self.folds_, "skipped": self.skipped_,
            "cv": [_plain(r) for r in self.cv_table()],
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, source: str = "fit") -> LawSelector:
        """A fitted selector from :meth:`to_dict` output (predicts exactly as the saved one)."""
        if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
            raise DataError(f"{source}: not a saved mixlab law fit (format {FORMAT!r}); write one with fit-law --save")
        spec = get_law(str(obj["law"]))
        sel = cls(law=str(obj.get("requested", obj["law"])))
        try:
            sel.estimator_ = spec.estimator.from_state(obj["state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: the saved law state is incomplete or corrupt ({exc!r})") from None
        sel.law_ = spec.name
        sel.settings_ = dict(obj.get("settings", {}))
        sel.selected_by_ = str(obj.get("selected_by", ""))
        sel.folds_ = [list(f) for f in obj.get("folds", [])]
        sel.skipped_ = dict(obj.get("skipped", {}))
        sel.cv_ = [{k: v for k, v in r.items() if k != "chosen"} for r in obj.get("cv", [])]
        sel.oof_ = None
        return sel


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN to ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    return obj


def fit_law(table: Any, law: str = "auto", **kwargs: Any) -> LawSelector:
    """Choose (``law="auto"``) or fix the law, choose its settings by leave-runs-out
    cross-validation and fit it: the one entry point of the mixers, ``mixlab fit-law`` and the
    benchmarks. ``table`` is a :class:`LongTable` or a :class:`~mixlab.laws.table.WideTable`;
    ``kwargs`` go to :class:`LawSelector`."""
    if not isinstance(table, LongTable):
        table = LongTable.from_wide(table)
    return LawSelector(law=law, **kwargs).fit(table)
