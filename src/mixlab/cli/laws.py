"""``mixlab fit-law`` (fit BiMix or a Data Mixing Law on any wide CSV) and ``mixlab entropy``."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from mixlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)
console = Console()


class Measure(str, Enum):
    se = "se"
    je = "je"
    ce = "ce"
    vne = "vne"


def _law_names() -> list[str]:
    from mixlab.laws.registry import REGISTRY

    return ["auto", *REGISTRY]


def _cv_table(selector) -> Table:
    t = Table(title="leave-runs-out cross-validation (held-out runs predicted at their last step)", title_justify="left")
    for col in ("", "law", "settings", "CV MRE %", "± SE", "points"):
        t.add_column(col, justify="right" if col in ("CV MRE %", "± SE", "points") else "left")
    from mixlab.laws.registry import get_law

    for row in selector.cv_table():
        default = get_law(row["law"]).defaults()
        settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row["settings"].items() if default.get(k) != v) or "defaults"
        if row["error"]:
            t.add_row("", row["law"], settings, "failed", "", "", style="dim")
            continue
        se = row["se"]
        t.add_row("*" if row["chosen"] else "", row["law"], settings, f"{row['mre']:.3f}",
                  "" if se is None or not np.isfinite(se) else f"{se:.3f}", str(row["n_points"]),
                  style="bold" if row["chosen"] else None)
    return t


def _bimix_table(model) -> Table:
    t = Table(title="BiMix fit: L = A / r^alpha * (B / s^beta + C)   (C = 1 gauge)", title_justify="left")
    for col in ("domain", "A", "alpha", "B", "beta", "R^2", "MRE %", "points"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for row in model.summary():
        t.add_row(
            row["domain"],
            *(f"{row[k]:.4g}±{row['se_' + k]:.2g}" for k in ("A", "alpha", "B", "beta")),
            f"{row['r2']:.4f}", f"{100 * row['mre']:.3f}", str(row["n"]),
        )
    return t


def _extension_table(model, title: str, number: str) -> Table:
    """A BiMix law with cross-domain coefficients (``model.coef``: ``tau`` or ``t``), one row per loss domain."""
    t = Table(title=title, title_justify="left")
    coef = getattr(model, f"{model.coef}_")
    for col in ("domain", "A", "alpha", "B", "beta", f"{model.coef} (" + ", ".join(model.domains_) + ")", "MRE %"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for j, d in enumerate(model.loss_domains_):
        t.add_row(d, *(f"{v[j]:.4g}" for v in (model.A_, model.alpha_, model.B_, model.beta_)),
                  ", ".join(format(v, number) for v in coef[j]), f"{100 * model.mre_.get(d, np.nan):.3f}")
    return t


def _transfer_table(model) -> Table:
    return _extension_table(
        model, "BiMix + transfer: L_i = A_i / (r_i + sum_j tau_ij r_j)^alpha_i * (B_i / s^beta_i + 1)", ".3g"
    )


def _dml_table(model) -> Table:
    t = Table(title="Data Mixing Law L = c + k exp(t . r), nested with L(s) = E + B s^-b per run "
              "(fitted at each query step)", title_justify="left")
    t.add_column("domain")
    t.add_column("step exponent b", justify="right")
    for d, b in zip(model.loss_domains_, model.b_, strict=True):
        t.add_row(d, f"{b:.4g}")
    return t


def _cross_table(model) -> Table:
    return _extension_table(
        model, "BiMix + cross term: L_i = A_i / r_i^alpha_i * exp(sum_j t_ij r_j) * (B_i / s^beta_i + 1)", "+.3g"
    )


def _params_table(model) -> Table:
    """Any other law: its ``params_`` (loss domain -> coefficients), one row per loss domain."""
    t = Table(title=f"{type(model).__name__} coefficients", title_justify="left")
    t.add_column("domain")
    t.add_column("coefficients")
    for d, coef in getattr(model, "params_", {}).items():
        t.add_row(str(d), ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in coef.items()))
    return t


_COEF_TABLES = {"bimix": _bimix_table, "bimix-transfer": _transfer_table, "bimix-cross": _cross_table, "dml": _dml_table}


def _report_records(selector, table) -> list[dict]:
    """The report's laws section: per loss domain, the fitted curve of the longest run that has the
    domain, and the cross-validated prediction of every run's last-step loss against the truth."""
    from mixlab.report.data import law_record

    model = selector.estimator_
    law = selector.law_
    last = table.last_rows()
    out = []
    for j, d in enumerate(table.loss_domains):
        own = table.domains.index(d) if d in table.domains else None
        runs_ok = [u for u in range(table.n_runs) if own is None or table.R[table.runs == u][0, own] > 0]
        if runs_ok:
            u = max(runs_ok, key=lambda q: int(np.sum(table.runs == q)))
            rows = np.nonzero((table.runs == u) & np.isfinite(table.Y[:, j]))[0]
            if rows.size:
                grid = np.geomspace(table.steps[rows].min(), table.steps[rows].max(), 24)
                curve = model.predict(np.repeat(table.R[rows[:1]], grid.size, 0), grid)[:, j]
                out.append(law_record(f"{d}: run {u} (longest)", table.steps[rows], table.Y[rows, j], grid, curve,
                                      law=law, x_label="steps", y_label=f"loss_{d}"))
        ok = table.scored()[last, j]
        if selector.oof_ is not None and ok.any():
            true, pred = table.Y[last, j][ok], selector.oof_[:, j][ok]
            label = "cross-validated prediction"
        elif ok.any():
            true, pred = table.Y[last, j][ok], model.predict(table.R[last], table.steps[last])[:, j][ok]
            label = "fitted prediction"
        else:
            continue
        good = np.isfinite(pred)
        if good.any():
            lo, hi = float(true.min()), float(true.max())
            out.append(law_record(f"{d}: last step, predicted vs true", true[good], pred[good], [lo, hi], [lo, hi],
                                  law=law, x_label=f"true loss_{d}", y_label=label))
    return out


def _check_query(query, domains: list[str]) -> None:
    if query is not None and query.domains != domains:
        raise DataError(
            f"{query.path}: proportion columns {query.domains} do not match the data's {domains}; "
            "give the query the same r_<domain> columns in the same order"
        )


def _plot_fit(model, table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doms = model.loss_domains_
    fig, axes = plt.subplots(1, len(doms), figsize=(4.2 * len(doms), 3.6), squeeze=False)
    mixes, inv = np.unique(np.round(table.R, 8), axis=0, return_inverse=True)
    cmap = plt.get_cmap("viridis", max(len(mixes), 2))
    grid = np.geomspace(table.steps.min(), table.steps.max() * 1.5, 24)
    for j, d in enumerate(doms):
        ax = axes[0, j]
        for m, mix in enumerate(mixes):
            rows = inv.ravel() == m
            ax.scatter(table.steps[rows], table.Y[rows, j], s=10, color=cmap(m))
            if d not in model.domains_ or mix[model.domains_.index(d)] > 0:
                ax.plot(grid, model.predict(np.repeat(mix[None], grid.size, 0), grid)[:, j], color=cmap(m), lw=1)
        ax.set_xscale("log")
        ax.set_title(d)
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("loss (points observed, lines fitted)")
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from mixlab.utils.io import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def fit_law(
    data: Annotated[
        Path | None, typer.Option("--data", help="Wide CSV: r_<domain> columns, step, loss_<domain> columns (optional run).")
    ] = None,
    law: Annotated[
        str, typer.Option("--law", help="auto (choose by cross-validation), bimix, bimix-transfer, bimix-cross or dml.")
    ] = "auto",
    predict: Annotated[
        Path | None, typer.Option("--predict", help="Query CSV with the same r_<domain> columns and step.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the predictions (CSV).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save a plot of observed points and fitted curves.")] = None,
    save: Annotated[
        Path | None, typer.Option("--save", help="Save the chosen law, settings, coefficients and CV table (JSON).")
    ] = None,
    load: Annotated[
        Path | None, typer.Option("--load", help="Predict with a fit saved by --save instead of fitting.")
    ] = None,
    share_beta: Annotated[
        bool | None, typer.Option("--share-beta/--no-share-beta", help="Fix: one step exponent for all domains.")
    ] = None,
    run_effects: Annotated[
        bool | None,
        typer.Option("--run-effects/--no-run-effects", help="Fix (bimix): fit the step term within runs."),
    ] = None,
    min_step_frac: Annotated[
        float | None, typer.Option("--min-step-frac", help="Fix the warm-up cut (fraction of the median run length).")
    ] = None,
    step_weight: Annotated[
        float | None, typer.Option("--step-weight", help="Fix the late-point weight (s / run's last step)^p.")
    ] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds over runs.")] = 5,
) -> None:
    """Fit a mixing law on any table of proxy-run losses, chosen by cross-validation over runs; predict, plot.

    The data CSV has one row per evaluation: a column r_<d> per training domain (the run's proportions,
    summing to 1), step, loss_<d> per modelled domain and optionally run. With --law auto (the default)
    every registered law (BiMix, arXiv 2405.14908; BiMix + transfer; the Data Mixing Law, arXiv
    2403.16952, nested with a step law) and its fitting settings (warm-up cut, late-point weight,
    shared step exponent, within-run fit) are scored by leave-runs-out cross-validation: fit on the
    other runs, predict each held-out run's last-step losses. The best law is kept unless a law with
    fewer coefficients is within one standard error. --law NAME fixes the law and still chooses its
    settings; the setting options fix those settings.

    Example: mixlab fit-law --data runs.csv --predict query.csv --out pred.csv --save fit.json
    """
    import json
    import warnings

    from mixlab.laws.registry import LongTable
    from mixlab.laws.select import LawSelector, fit_law
    from mixlab.laws.table import read_wide_csv, write_predictions
    from mixlab.utils.io import atomic_write_json

    if law not in _law_names():
        raise ConfigError(f"--law {law!r}: choose one of {_law_names()}")
    if out is not None and predict is None:
        raise ConfigError("--out needs --predict (the query CSV to predict for)")
    fixed = {k: v for k, v in {"share_beta": share_beta, "run_effects": run_effects, "min_step_frac": min_step_frac,
                               "step_weight": step_weight}.items() if v is not None}
    table = None
    query = read_wide_csv(predict, need_losses=False) if predict else None
    if (data is None) == (load is None):
        raise ConfigError("give --data (a table to fit) or --load (a fit saved with --save), not both or neither")
    if load is not None:
        try:
            obj = json.loads(Path(load).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{load}: cannot read a saved fit ({exc})") from None
        selector = LawSelector.from_dict(obj, source=str(load))
        _check_query(query, selector.domains_)
    else:
        wide = read_wide_csv(data)
        _check_query(query, wide.domains)
        table = LongTable.from_wide(wide)
        if law == "bimix" and any(d not in table.domains for d in table.loss_domains):
            raise DataError(
                f"{data}: loss column(s) {[f'loss_{d}' for d in table.loss_domains if d not in table.domains]} have no "
                f"matching r_ column; BiMix models a domain's loss through its own proportion (domains with r_ "
                f"columns: {table.domains}); use --law dml"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            selector = fit_law(table, law=law, fixed=fixed, n_folds=folds)
        for w in {str(w.message): w for w in caught}.values():
            console.print(f"[yellow]warning:[/] {w.message}")
        for name, why in selector.skipped_.items():
            console.print(f"[dim]{name}: not considered, {why}[/]")
        if selector.cv_:
            console.print(_cv_table(selector))
    settings = ", ".join(f"{k}={v}" for k, v in selector.settings_.items()) or "none"
    console.print(f"chosen law: [bold]{selector.law_}[/] ({settings}); by {selector.selected_by_}")
    console.print(_COEF_TABLES.get(selector.law_, _params_table)(selector.estimator_))
    if save is not None:
        obj = selector.to_dict()
        if table is not None:
            obj["laws"] = _report_records(selector, table)
        atomic_write_json(save, obj)
        console.print(f"wrote the fit to {save}")
    if query is not None:
        pred = selector.predict(query.R, query.steps)
        if np.any(~np.isfinite(pred)):
            console.print("[yellow]warning:[/] some query rows give a domain proportion 0: the law predicts inf there")
        if out is not None:
            write_predictions(out, query, selector.loss_domains_, pred)
            console.print(f"wrote {pred.shape[0]} predictions to {out}")
        else:
            t = Table(title=f"predictions for {query.path}", title_justify="left")
            for c in [*(f"r_{d}" for d in query.domains), "step", *(f"loss_{d}" for d in selector.loss_domains_)]:
                t.add_column(c, justify="right")
            for r, s, y in zip(query.R, query.steps, pred, strict=True):
                t.add_row(*(f"{v:.4g}" for v in r), f"{s:g}", *(f"{v:.4f}" for v in y))
            console.print(t)
    if plot is not None:
        if table is None:
            raise ConfigError("--plot needs --data (the observed points)")
        _plot_fit(selector.estimator_, table, plot)
        console.print(f"wrote plot to {plot}")


def entropy(
    corpus: Annotated[Path, typer.Argument(help="A prepared corpus directory (mixlab prepare).")],
    measure: Annotated[Measure, typer.Option("--measure", help="Entropy that sets the mixture (ce is the paper's best).")] = Measure.ce,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Packed sequence length (the paper: 1024).")] = 1024,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Read at most this many tokens per domain.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Save the mixture (YAML or JSON).")] = None,
) -> None:
    """Training-free mixture from per-domain entropy (BiMix's entropy proxies, arXiv 2405.14908).

    Computes, on each domain's training shard, the unigram Shannon entropy (SE), the joint entropy of
    adjacent token pairs (JE), the conditional entropy of a token given the previous one (CE) and the
    von Neumann entropy of a sample kernel (VNE, hashed n-gram embeddings), and turns the chosen one into
    weights r_d = exp(H_d) / sum exp(H).

    Example: mixlab entropy corpora/mine --measure ce --out mixture.yaml
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mixlab.data import Corpus
    from mixlab.laws.entropy import corpus_entropies, entropy_mixture
    from mixlab.mixture import Mixture, save_mixture

    c = Corpus.open(corpus)
    counts = c.token_counts()
    total = sum(min(counts[d], max_tokens) if max_tokens else counts[d] for d in c.domains)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("entropy", total=total)
        res = corpus_entropies(
            c, seq_len=seq_len, max_tokens=max_tokens,
            on_progress=lambda d, n: bar.update(task, advance=n, description=f"entropy: {d}"),
        )
    mix = entropy_mixture({d: r.get(measure.value) for d, r in res.items()})
    t = Table(title=f"entropy (nats) of {corpus}; mixture from {measure.value.upper()}", title_justify="left")
    for col in ("domain", "tokens", "SE", "JE", "CE", "VNE", "weight"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for d, r in res.items():
        t.add_row(d, f"{r.tokens:,}", f"{r.se:.4f}", f"{r.je:.4f}", f"{r.ce:.4f}", f"{r.vne:.4f}", f"{mix[d]:.4f}")
    console.print(t)
    if out is not None:
        save_mixture(Mixture(mix), out)
        console.print(f"wrote mixture to {out}")
