"""PNG charts of an experiment: metric@k curves per model, and training loss per epoch."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_metrics_at_k", "plot_training"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_at_k(results: dict[str, dict], ks, path, names=("precision", "recall", "ndcg", "hit")) -> Path:
    """One panel per metric name, one line per model, x = k."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4))
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
    plt.close(fig)
    return Path(path)


def plot_training(histories: dict[str, list[dict]], path) -> Path:
    """Training loss (left) and validation NDCG@10 of the epoch search (right), one line per model."""
    plt = _pyplot()
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
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
    plt.close(fig)
    return Path(path)
