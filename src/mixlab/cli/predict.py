"""``mixlab predict`` and ``mixlab propose``: fit a mixture -> loss predictor on any sweep's CSVs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

log = logging.getLogger(__name__)

TrainMix = Annotated[Path, typer.Option("--train-mixtures", help="CSV: an index column, then one weight column per domain.")]
TrainLoss = Annotated[Path, typer.Option("--train-losses", help="CSV: an index column, then loss columns; rows align with --train-mixtures by position.")]
PredictorOpt = Annotated[str, typer.Option("--predictor", "-p", help="lightgbm, tikmix-m, linear, loglinear, dml, bimix, logmix, gp, mixlab (default: mixlab's best).")]


def _parse_pairs(items: list[str] | None, what: str) -> dict[str, float]:
    from mixlab.errors import ConfigError

    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise ConfigError(f"{what}: expected NAME=VALUE, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"{what}: {value!r} in {item!r} is not a number") from None
    return out


def _load(train_mixtures: Path, train_losses: Path, targets: list[str]) -> tuple[Any, Any, Any]:
    """Training mixtures, the chosen loss columns, and the mixture table."""
    from mixlab.errors import DataError
    from mixlab.predictors import check_mixtures, check_targets
    from mixlab.predictors.data import load_sweep

    mix, loss = load_sweep(train_mixtures, train_losses)
    cols = targets or loss.columns
    for t in cols:
        if t not in loss.columns:
            raise DataError(f"{train_losses}: no loss column {t!r}; columns are {loss.columns}")
    Y = loss.values[:, [loss.columns.index(t) for t in cols]]
    check_mixtures(mix.values, where=str(train_mixtures), lines=mix.lines)
    check_targets(Y, len(mix.index), where=str(train_losses), lines=loss.lines)
    return mix, Y, list(cols)


def _aligned_test(test_mixtures: Path, domains: list[str]) -> Any:
    """The test mixtures with columns reordered to the training file's domains (by name)."""
    from mixlab.errors import DataError
    from mixlab.predictors import check_mixtures
    from mixlab.predictors.data import read_table

    test = read_table(test_mixtures)
    if sorted(test.columns) != sorted(domains):
        missing = [d for d in domains if d not in test.columns]
        extra = [c for c in test.columns if c not in domains]
        raise DataError(
            f"{test_mixtures}: mixture columns do not match the training domains (missing {missing}, unknown "
            f"{extra}); both files need one column per domain with the same names"
        )
    test.values = test.values[:, [test.columns.index(d) for d in domains]]
    test.columns = list(domains)
    check_mixtures(test.values, where=str(test_mixtures), lines=test.lines)
    return test


def predict(
    train_mixtures: TrainMix,
    train_losses: TrainLoss,
    target: Annotated[str, typer.Option("--target", "-t", help="The loss column to predict.")],
    test_mixtures: Annotated[Path, typer.Option("--test-mixtures", help="CSV of mixtures to predict (same domain columns).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV: index,prediction.")],
    predictor: PredictorOpt = "best",
    cv: Annotated[int, typer.Option("--cv", help="Also report K-fold cross-validation on the training runs (0: off).")] = 0,
) -> None:
    """Fit a mixture -> loss predictor on a sweep's results and predict the loss of new mixtures.

    Reads CSVs shaped like RegMix's published files (an ``index`` column, then one column per domain or
    per loss; mixture and loss rows align by position) and writes one row per test mixture: its
    ``index`` and the predicted value in a column named ``prediction``.

    Example:

        mixlab predict --train-mixtures train_mixture_1m.csv --train-losses train_pile_loss_1m.csv --target metric/the_pile_pile_cc_val_loss --test-mixtures test_mixture_1m.csv --out preds.csv
    """
    from rich.console import Console

    from mixlab.predictors import cross_validate, get_predictor
    from mixlab.utils.io import atomic_write_text

    mix, Y, cols = _load(train_mixtures, train_losses, [target])
    y = Y[:, 0]
    test = _aligned_test(test_mixtures, mix.columns)
    model = get_predictor(None if predictor == "best" else predictor)
    console = Console(stderr=True)
    if cv:
        res = cross_validate(model, mix.values, y, folds=cv)
        m = res.overall
        console.print(
            f"{cv}-fold CV of {model.name} on {len(y)} runs: Spearman {m['spearman']:.4f}, "
            f"Pearson {m['pearson']:.4f}, MAE {m['mae']:.4g}"
        )
    log.info("fitting %s on %d runs x %d domains for %s", model.name, len(y), len(mix.columns), target)
    with console.status(f"fitting {model.name} on {len(y)} runs"):
        model.fit(mix.values, y, domains=mix.columns, targets=cols)
        pred = model.predict(test.values)
    lines = ["index,prediction", *(f"{i},{float(p)!r}" for i, p in zip(test.index, pred, strict=True))]
    atomic_write_text(out, "\n".join(lines) + "\n")
    console.print(f"wrote {len(pred)} predictions of {target} by {model.name} to {out}")


def propose(
    train_mixtures: TrainMix,
    train_losses: TrainLoss,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to save the mixture (.yaml/.yml or .json).")],
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="COLUMN or COLUMN=WEIGHT (repeatable): the loss, or weighted sum of losses, to minimise (a sweep run with --target PATH has a target:NAME column for it). Default: the average of all loss columns."),
    ] = None,
    test_mixtures: Annotated[Path | None, typer.Option("--test-mixtures", help="Optional CSV of extra candidate mixtures; the search also starts from them.")] = None,
    predictor: PredictorOpt = "best",
    lower: Annotated[list[str] | None, typer.Option("--lower", help="DOMAIN=MIN weight (repeatable).")] = None,
    upper: Annotated[list[str] | None, typer.Option("--upper", help="DOMAIN=MAX weight (repeatable).")] = None,
    available: Annotated[list[str] | None, typer.Option("--available", help="DOMAIN=TOKENS on disk (repeatable), for the availability cap.")] = None,
    tokens: Annotated[float | None, typer.Option("--tokens", help="Token budget of the final run (with --available and --max-epochs).")] = None,
    max_epochs: Annotated[float | None, typer.Option("--max-epochs", help="At most this many passes over any domain's tokens.")] = None,
    method: Annotated[str, typer.Option("--method", help="auto (top-k then SLSQP), topk (RegMix) or slsqp.")] = "auto",
    samples: Annotated[int, typer.Option("--samples", help="Dirichlet samples for the top-k search.")] = 100_000,
    top_k: Annotated[int, typer.Option("--top-k", help="Average the best K samples (RegMix: 128).")] = 128,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    report_dir: Annotated[Path | None, typer.Option("--report-dir", help="Also write DIR/predictions.csv: the predictor's 5-fold cross-validated prediction of each run's loss against the true loss, which `mixlab report DIR` shows.")] = None,
) -> None:
    """Fit a predictor on a sweep's results and save the mixture that minimises the predicted loss.

    The search runs on the simplex within --lower/--upper bounds and the availability cap (a domain may
    not be repeated more than --max-epochs times over a --tokens budget, given its --available tokens).

    Example:

        mixlab propose --train-mixtures train_mixture_1m.csv --train-losses train_pile_loss_1m.csv --target metric/the_pile_pile_cc_val_loss --upper train_the_pile_pile_cc=0.5 --out best.yaml
    """
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from mixlab.errors import ConfigError
    from mixlab.mixture import MixtureConstraints, save_mixture
    from mixlab.predictors import get_predictor
    from mixlab.predictors.search import search, search_continuous

    weights = {}
    for item in target or []:
        name, sep, value = item.rpartition("=")
        if sep and name:
            weights.update(_parse_pairs([item], "--target"))
        else:
            weights[item] = 1.0
    mix, Y, cols = _load(train_mixtures, train_losses, list(weights))
    domains = mix.columns
    avail = _parse_pairs(available, "--available")
    if (max_epochs is not None) != bool(avail) or (max_epochs is not None and tokens is None):
        if max_epochs is not None or avail or tokens is not None:
            raise ConfigError("the availability cap needs all of --available (per domain), --tokens and --max-epochs")
    cons = MixtureConstraints.build(
        domains, lower=_parse_pairs(lower, "--lower"), upper=_parse_pairs(upper, "--upper"),
        available_tokens=avail or None, remaining_tokens=tokens, max_epochs=max_epochs,
    )
    model = get_predictor(None if predictor == "best" else predictor)
    log.info("fitting %s on %d runs x %d domains for %s", model.name, len(Y), len(domains), cols)
    console = Console()
    goal = {c: weights.get(c, 1.0) for c in cols} if weights else None
    prior = np.mean(mix.values, axis=0)
    with Console(stderr=True).status(f"fitting {model.name} on {len(Y)} runs and searching") as status:
        model.fit(mix.values, Y, domains=domains, targets=cols)
        status.update(f"searching the mixture ({method})")
        found = search(model, goal, cons, method=method, prior=prior, n_samples=samples, top_k=top_k, seed=seed)
        if test_mixtures is not None:
            test = _aligned_test(test_mixtures, domains)
            starts = list(test.values[:8]) + [found.mixture.to_array(domains)]
            extra = search_continuous(model, goal, cons, starts=starts, seed=seed)
            if extra.predicted < found.predicted:
                found = extra
    save_mixture(found.mixture, out)
    if report_dir is not None:
        _write_cv_predictions(model, mix.values, Y, cols, report_dir / "predictions.csv", seed)
    table = Table(title=f"proposed mixture ({model.name}, {found.method}; predicted {found.predicted:.4f})")
    table.add_column("domain")
    table.add_column("weight", justify="right")
    for d in domains:
        table.add_row(d, f"{found.mixture[d]:.4f}")
    console.print(table)
    console.print(f"saved to {out}")


def _write_cv_predictions(model: Any, X: Any, Y: Any, cols: list[str], path: Path, seed: int) -> None:
    """Out-of-fold predictions (``true, predicted, model``) in the layout the report's predictor section reads."""
    import csv

    import numpy as np

    from mixlab.predictors.base import cross_validate
    from mixlab.utils.io import atomic_open

    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    cv = cross_validate(model, X, Y, folds=min(5, len(X)), seed=seed)
    oof = np.asarray(cv.oof, dtype=float).reshape(Y.shape)
    with atomic_open(path, "w") as fh:
        w = csv.writer(fh)
        w.writerow(["true", "predicted", "model"])
        for j, col in enumerate(cols):
            for t, pr in zip(Y[:, j], oof[:, j], strict=True):
                w.writerow([f"{t:.6g}", f"{pr:.6g}", f"{model.name}: {col}"])
    log.info("wrote cross-validated predictions (Spearman %.3f) to %s", cv.overall.get("spearman", float("nan")), path)
