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


class LawName(str, Enum):
    bimix = "bimix"
    dml = "dml"


class Measure(str, Enum):
    se = "se"
    je = "je"
    ce = "ce"
    vne = "vne"


def _fit_bimix(table, *, share_beta: bool = False, run_effects: bool = False):
    from mixlab.laws.bimix import BiMixModel

    missing = [d for d in table.loss_domains if d not in table.domains]
    if missing:
        raise DataError(
            f"{table.path}: loss column(s) {[f'loss_{d}' for d in missing]} have no matching r_ column; BiMix models "
            f"a domain's loss through its own proportion (domains with r_ columns: {table.domains}); use --law dml"
        )
    model = BiMixModel(share_beta=share_beta, run_effects=run_effects)
    return model.fit(table.R, table.steps, table.Y, domains=table.domains, loss_domains=table.loss_domains)


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


def _dml_fits(table, steps: list[float]):
    from mixlab.laws.dml import DataMixingLaw

    fits = {}
    for s in steps:
        rows = table.steps == s if np.isfinite(s) else np.ones(table.R.shape[0], bool)
        if not rows.any():
            have = sorted({float(v) for v in table.steps})
            raise DataError(
                f"the Data Mixing Law has no step term: it is fitted on the rows at one step, and the data has no "
                f"rows at step {s:g} (steps present: {have[:10]}{' ...' if len(have) > 10 else ''})"
            )
        fits[s] = DataMixingLaw().fit(table.R[rows], table.Y[rows])
    return fits


def _dml_table(fits, table) -> Table:
    t = Table(title="Data Mixing Law fit: L = c + k exp(sum_i t_i r_i)   (sum_i t_i = 0 gauge)", title_justify="left")
    for col in ("step", "domain", "c", "k", "t (" + ", ".join(table.domains) + ")", "R^2", "MRE %"):
        t.add_column(col, justify="left" if col in ("domain", "step") else "right")
    for s, law in fits.items():
        for j, d in enumerate(table.loss_domains):
            t.add_row(
                f"{s:g}", d, f"{law.c_[j]:.4g}", f"{law.k_[j]:.4g}", ", ".join(f"{v:+.3g}" for v in law.t_[j]),
                f"{law.r2_[j]:.4f}", f"{100 * law.mre_[j]:.3f}",
            )
    return t


def _plot_bimix(model, table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doms = model.loss_domains_
    fig, axes = plt.subplots(1, len(doms), figsize=(4.2 * len(doms), 3.6), squeeze=False)
    mixes, inv = np.unique(np.round(table.R, 8), axis=0, return_inverse=True)
    cmap = plt.get_cmap("viridis", max(len(mixes), 2))
    grid = np.geomspace(table.steps.min(), table.steps.max() * 1.5, 100)
    for j, d in enumerate(doms):
        ax = axes[0, j]
        for m, mix in enumerate(mixes):
            rows = inv.ravel() == m
            ax.scatter(table.steps[rows], table.Y[rows, j], s=10, color=cmap(m))
            if mix[model.domains_.index(d)] > 0:
                ax.plot(grid, model.predict(np.repeat(mix[None], grid.size, 0), grid)[:, j], color=cmap(m), lw=1)
        ax.set_xscale("log")
        ax.set_title(d)
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("loss (points observed, lines fitted)")
    fig.tight_layout()
    _save_fig(fig, path)


def _plot_dml(fits, table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doms = table.loss_domains
    fig, axes = plt.subplots(1, len(doms), figsize=(4.2 * len(doms), 3.6), squeeze=False)
    for j, d in enumerate(doms):
        ax = axes[0, j]
        for s, law in fits.items():
            rows = table.steps == s if np.isfinite(s) else np.ones(table.R.shape[0], bool)
            pred = law.predict(table.R[rows])[:, j]
            ax.scatter(table.Y[rows, j], pred, s=12, label=f"step {s:g}")
        lo, hi = np.nanmin(table.Y[:, j]), np.nanmax(table.Y[:, j])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(d)
        ax.set_xlabel("observed loss")
    axes[0, 0].set_ylabel("fitted loss")
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from mixlab.utils.io import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def fit_law(
    data: Annotated[Path, typer.Option("--data", help="Wide CSV: r_<domain> columns, step, loss_<domain> columns.")],
    law: Annotated[LawName, typer.Option("--law", help="bimix (proportion x steps) or dml (mixture only).")] = LawName.bimix,
    predict: Annotated[
        Path | None, typer.Option("--predict", help="Query CSV with the same r_<domain> columns and step.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the predictions (CSV).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save a plot of observed points and fitted curves.")] = None,
    save: Annotated[Path | None, typer.Option("--save", help="Save the fitted coefficients as JSON.")] = None,
    share_beta: Annotated[
        bool, typer.Option("--share-beta", help="BiMix: one step exponent for all domains, fitted jointly.")
    ] = False,
    run_effects: Annotated[
        bool,
        typer.Option(
            "--run-effects",
            help="BiMix: fit the step term within runs (rows with the same proportions are one run), so a "
            "run's loss level that the law does not explain cannot bend the extrapolation in steps.",
        ),
    ] = False,
) -> None:
    """Fit a mixing law on any table of proxy-run losses, print its fit statistics, predict, plot.

    The data CSV has one row per evaluation: a column r_<d> per training domain (the run's proportions,
    summing to 1), step, and loss_<d> per modelled domain. BiMix (arXiv 2405.14908) fits
    L_d = A / r_d^alpha * (B / step^beta + C) per domain and extrapolates to later steps; the Data Mixing
    Law (arXiv 2403.16952) fits L_d = c + k exp(t . r) on the rows at one step (for predictions: at each
    query step, which must occur in the data).

    Example: mixlab fit-law --data runs.csv --law bimix --predict query.csv --out pred.csv --plot fit.png
    """
    import warnings

    from mixlab.laws.table import read_wide_csv, write_predictions
    from mixlab.utils.io import atomic_write_json

    if out is not None and predict is None:
        raise ConfigError("--out needs --predict (the query CSV to predict for)")
    table = read_wide_csv(data)
    query = read_wide_csv(predict, need_losses=False, need_step=law is LawName.bimix) if predict else None
    if query is not None and query.domains != table.domains:
        raise DataError(
            f"{query.path}: proportion columns {query.domains} do not match the data's {table.domains}; "
            "give the query the same r_<domain> columns in the same order"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if law is LawName.bimix:
            model = _fit_bimix(table, share_beta=share_beta, run_effects=run_effects)
            console.print(_bimix_table(model))
            params = {d: model.laws_[d].to_dict() for d in model.loss_domains_}
        else:
            steps = sorted({float(s) for s in query.steps}) if query is not None else [float(np.nanmax(table.steps))]
            fits = _dml_fits(table, steps)
            console.print(_dml_table(fits, table))
            params = {f"{s:g}": f.to_dict() for s, f in fits.items()}
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}")
    if save is not None:
        atomic_write_json(save, {"law": law.value, "domains": table.domains, "loss_domains": table.loss_domains, "fits": params})
    if query is not None:
        if law is LawName.bimix:
            pred = model.predict(query.R, query.steps)
        else:
            pred = np.zeros((query.R.shape[0], len(table.loss_domains)))
            for s, f in fits.items():
                rows = query.steps == s if np.isfinite(s) else np.ones(query.R.shape[0], bool)
                pred[rows] = f.predict(query.R[rows])
        if np.any(~np.isfinite(pred)):
            console.print("[yellow]warning:[/] some query rows give a domain proportion 0: BiMix predicts inf there")
        if out is not None:
            write_predictions(out, query, table.loss_domains, pred)
            console.print(f"wrote {pred.shape[0]} predictions to {out}")
        else:
            t = Table(title=f"predictions for {query.path}", title_justify="left")
            for c in [*(f"r_{d}" for d in query.domains), "step", *(f"loss_{d}" for d in table.loss_domains)]:
                t.add_column(c, justify="right")
            for r, s, y in zip(query.R, query.steps, pred, strict=True):
                t.add_row(*(f"{v:.4g}" for v in r), f"{s:g}", *(f"{v:.4f}" for v in y))
            console.print(t)
    if plot is not None:
        if law is LawName.bimix:
            _plot_bimix(model, table, plot)
        else:
            _plot_dml(fits, table, plot)
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
