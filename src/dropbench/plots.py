"""Figures from ``results/summary.csv`` only."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dropbench.grid import BASELINE  # noqa: E402


def score_vs_dropped(summary: pd.DataFrame, path: str | Path) -> None:
    """One panel per task, one line per (model, strategy): task score against layers dropped."""
    scores = summary[summary["metric"] == "task_score"]
    scores = scores.groupby(["model", "strategy", "k", "task"], as_index=False)["value"].mean()
    tasks = sorted(scores["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = scores[scores["task"] == task]
        for model, model_rows in rows.groupby("model"):
            base = model_rows[model_rows["strategy"] == BASELINE]
            for strategy, line in model_rows[model_rows["strategy"] != BASELINE].groupby("strategy"):
                line = pd.concat([base, line]).sort_values("k")
                ax.plot(line["k"], line["value"], marker="o", label=f"{model} {strategy}")
            ax.scatter(base["k"], base["value"], color="black", zorder=3)
        ax.set_title(task)
        ax.set_xlabel("layers dropped (k)")
        ax.set_ylabel("dev score")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    fig.savefig(Path(path).with_suffix(".pdf"))
    plt.close(fig)


def plot_all(summary_csv: str | Path, outputs: dict[str, str]) -> None:
    summary = pd.read_csv(summary_csv)
    score_vs_dropped(summary, outputs["score_vs_dropped"])
