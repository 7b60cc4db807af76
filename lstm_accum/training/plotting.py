"""Training curves: training loss and validation perplexity against updates.

Uses matplotlib's non-interactive ``Agg`` backend, so it works on machines
without a display and never opens a window.
"""
import json
import os

from ..files import atomic_open

__all__ = ["read_metrics", "plot_curves"]


def read_metrics(path):
    """Read the records of a ``metrics.jsonl`` file.

    Parameters
    ----------
    path : str
        One JSON object per line, as written by
        :class:`lstm_accum.training.reporter.Reporter`.

    Returns
    -------
    list of dict
        In file order. A last line cut short by a killed process is ignored.
    """
    records = []
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                # only possible for the last line of a killed run
                continue
    return records


def plot_curves(records, path, title=None):
    """Write a PNG of training loss and validation perplexity vs updates.

    Parameters
    ----------
    records : list of dict
        Metrics records: ``{'kind': 'update', 'update', 'loss', ...}`` and
        ``{'kind': 'validation', 'update', 'perplexity', ...}``.
    path : str
        The PNG to write (replaced atomically).
    title : str, optional
        Figure title.

    Returns
    -------
    str
        ``path``.

    Notes
    -----
    The training loss is plotted per update (nats per target token) on the
    left axis, the validation perplexity on the right axis (log scale).
    """
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    updates = [r for r in records if r.get("kind") == "update"
               and r.get("loss") is not None]
    valid = [r for r in records if r.get("kind") == "validation"
             and r.get("perplexity") is not None]
    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        ax_loss.plot([r["update"] for r in updates],
                     [r["loss"] for r in updates], color="tab:blue",
                     linewidth=1, label="training loss (nats/token)")
        ax_loss.set_xlabel("update")
        ax_loss.set_ylabel("training loss (nats/token)", color="tab:blue")
        ax_ppl = ax_loss.twinx()
        ax_ppl.plot([r["update"] for r in valid],
                    [r["perplexity"] for r in valid], "o-",
                    color="tab:red", label="validation perplexity")
        ax_ppl.set_ylabel("validation perplexity", color="tab:red")
        if valid and all(r["perplexity"] > 0 for r in valid):
            ax_ppl.set_yscale("log")
        if title:
            ax_loss.set_title(title)
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
    return path
