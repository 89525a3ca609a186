"""PNG charts of an experiment: metric@k curves per model, and training loss per epoch.

Drawn with matplotlib's object API (a :class:`~matplotlib.figure.Figure` with its own Agg canvas), so
neither pyplot's global state nor the application's chosen backend is touched. Needs
``pip install "mmrec_fast[plots]"``.
"""

from __future__ import annotations

from pathlib import Path

from .._optional import require

__all__ = ["plot_metrics_at_k", "plot_training"]


def _figure(figsize):
    """A new Figure drawn by the Agg canvas (files only; no display, no backend switch)."""
    figure = require("matplotlib.figure", extra="plots", feature="PNG charts")
    backend_agg = require("matplotlib.backends.backend_agg", extra="plots", feature="PNG charts")
    fig = figure.Figure(figsize=figsize)
    backend_agg.FigureCanvasAgg(fig)
    return fig


def plot_metrics_at_k(results: dict[str, dict], ks, path, names=("precision", "recall", "ndcg", "hit")) -> Path:
    """One panel per metric name, one line per model, x = k.

    Parameters
    ----------
    results : dict of str to dict
        Model name -> metrics with keys ``f"{name}@{k}"``.
    ks : sequence of int
        The cut-offs on the x axis.
    path : str or os.PathLike
        PNG file to write.
    names : sequence of str
        Metric names, one panel each.

    Returns
    -------
    Path
        ``path``.
    """
    fig = _figure((4 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for model, metrics in results.items():
            ax.plot(list(ks), [metrics[f"{name}@{k}"] for k in ks], marker="o", label=model)
        ax.set_title(f"{name}@k")
        ax.set_xlabel("k")
        ax.set_xticks(list(ks))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_training(histories: dict[str, list[dict]], path) -> Path:
    """Training loss (left) and validation NDCG@10 of the epoch search (right), one line per model.

    Parameters
    ----------
    histories : dict of str to list of dict
        Model name -> per-epoch records with ``"epoch"`` and optionally ``"loss"`` / ``"val_ndcg@10"``.
    path : str or os.PathLike
        PNG file to write.

    Returns
    -------
    Path
        ``path``.
    """
    fig = _figure((9, 3.4))
    loss_ax, val_ax = fig.subplots(1, 2)
    for model, history in histories.items():
        epochs = [e["epoch"] for e in history]
        if all("loss" in e for e in history):  # closed-form and untracked fits have no loss curve
            loss_ax.plot(epochs, [e["loss"] for e in history], marker=".", label=model)
        val = [(e["epoch"], e["val_ndcg@10"]) for e in history if "val_ndcg@10" in e]
        if val:
            val_ax.plot(*zip(*val), marker=".", label=model)
    # BPR losses (~0.1-0.7) and softmax losses (~log(n_items)) differ by an order of magnitude.
    loss_ax.set_yscale("log")
    loss_ax.set_title("training loss (epoch search, log scale)")
    val_ax.set_title("validation NDCG@10")
    for ax in (loss_ax, val_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
