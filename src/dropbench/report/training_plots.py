"""The training-loss figure: did every variant's fine-tune fit its training rows (dropbench.train.convergence)?

One panel per (model, task); per variant (strategy, k) the training loss divided by the trivial predictor's
loss, smoothed over a tenth of the run and averaged over seeds, against the optimisation step. The dashed
line at 1 is the trivial predictor; the dotted one the underfit threshold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dropbench.plan.cells import Cell, variant_name  # noqa: E402
from dropbench.train.convergence import UNDERFIT_FIT  # noqa: E402
from dropbench.report.plots import _panels, _strategy_colors  # noqa: E402

CURVE_COLUMNS = ["model", "strategy", "k", "task", "step", "fit", "seeds"]


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    steps = np.arange(1, len(values) + 1)
    starts = np.maximum(0, steps - window)
    return (sums[steps] - sums[starts]) / (steps - starts)


def loss_curves(train_logs: Iterable[str | Path]) -> pd.DataFrame:
    """Per (model, strategy, k, task, step): the smoothed training loss / trivial loss, mean over seeds.
    Train logs written before convergence was recorded (no ``fit``) are left out."""
    rows = []
    for path in train_logs:
        log = json.loads(Path(path).read_text())
        if not log.get("fit") or not log["losses"]:
            continue
        cell = Cell.from_path(path).as_dict()
        losses = np.asarray(log["losses"], dtype=float) / log["fit"]["trivial_loss"]
        curve = smoothed(losses, max(1, len(losses) // 10))
        rows += [{**cell, "step": step + 1, "fit": value} for step, value in enumerate(curve)]
    if not rows:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["model", "strategy", "k", "task", "step"], sort=False)
    return grouped.agg(fit=("fit", "mean"), seeds=("seed", "nunique")).reset_index()[CURVE_COLUMNS]


def training_loss_figure(curves: pd.DataFrame, style: dict):
    panels = list(dict.fromkeys(zip(curves["model"], curves["task"]))) or [("", "")]
    fig, axes = _panels(len(panels), style)
    colors = _strategy_colors(pd.unique(curves["strategy"]))
    for ax, (model, task) in zip(axes, panels):
        if not model:
            ax.text(0.5, 0.5, "no training log with a recorded fit", ha="center", va="center", transform=ax.transAxes)
            continue
        panel = curves[(curves["model"] == model) & (curves["task"] == task)]
        ks = sorted(pd.unique(panel["k"]))
        for (strategy, k), line in panel.groupby(["strategy", "k"], sort=False):
            width = 1.0 + 1.5 * ks.index(k) / max(1, len(ks) - 1)
            ax.plot(line["step"], line["fit"], color=colors[strategy], linewidth=width, label=variant_name(strategy, k))
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(UNDERFIT_FIT, color="grey", linestyle=":", linewidth=0.8)
        ax.set(title=f"{model} / {task}", xlabel="step", ylabel="train loss / trivial loss")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
    return fig


def plot_training_loss(train_logs: Iterable[str | Path], png, pdf, csv, style: dict) -> None:
    from dropbench.report.plots import save

    curves = loss_curves(train_logs)
    save(training_loss_figure(curves, style), curves, png, pdf, csv, dpi=style["dpi"])
