"""The figure of intervals over seeds and significance (rule ``plot_intervals``, from ``results/stats.csv``):
one panel per task, mean task score against k with 95% t-intervals, filled markers where the paired test against
the unpruned model is significant. Saved like every figure of dropbench.report.plots (PNG, PDF, CSV of the numbers)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dropbench.plan.grid import BASELINE  # noqa: E402
from dropbench.report import tables as report_tables  # noqa: E402
from dropbench.report.plots import LINESTYLES, _panels, _strategy_colors, check_style, figure_paths, save  # noqa: E402


def score_intervals(table: pd.DataFrame, style: dict):
    """One panel per task, one line per (model, strategy): mean task score x 100 over seeds against k,
    with the 95% t-interval as error bars (none with one seed). A filled marker differs significantly
    from the unpruned model (paired test, Holm-adjusted); a hollow one does not."""
    scores = table[table["comparison"].fillna("").eq("") & table["metric"].eq("task_score")]
    significant = report_tables.significant_tests(table)
    significant = significant[significant["comparison"].eq(f"{BASELINE}-k0") & significant["metric"].eq("task_score")]
    keys = ["model", "strategy", "k", "task"]
    marked = set(significant[keys].itertuples(index=False, name=None))
    data = scores[[*keys, "n_seeds", "mean", "ci_low", "ci_high"]].copy()
    data["significant"] = [key in marked for key in data[keys].itertuples(index=False, name=None)]
    data[["mean", "ci_low", "ci_high"]] *= 100
    tasks = list(pd.unique(data["task"]))
    colors = _strategy_colors(s for s in pd.unique(data["strategy"]) if s != BASELINE)
    models = list(pd.unique(data["model"]))
    rows = []
    fig, axes = _panels(max(len(tasks), 1), style)
    if not tasks:  # e.g. a partial report in which every cell failed
        axes[0].text(0.5, 0.5, "no cell has a result yet", ha="center", va="center", transform=axes[0].transAxes)
    for ax, task in zip(axes, tasks):
        for m, model in enumerate(models):
            panel = data[(data["task"] == task) & (data["model"] == model)]
            base = panel[panel["strategy"] == BASELINE]
            for strategy, color in colors.items():
                line = pd.concat([base, panel[panel["strategy"] == strategy]]).sort_values("k")
                if len(line) == len(base):
                    continue
                errors = np.abs(line[["ci_low", "ci_high"]].to_numpy().T - line["mean"].to_numpy())
                ax.errorbar(line["k"], line["mean"], yerr=np.nan_to_num(errors), color=color, capsize=3,
                            linestyle=LINESTYLES[m % len(LINESTYLES)], label=strategy if len(models) == 1 else f"{model} {strategy}")
                ax.scatter(line["k"], line["mean"], color=color, zorder=3,
                           facecolors=[color if s else "white" for s in line["significant"]])
                rows += line.assign(panel=task).to_dict("records")
            ax.scatter(base["k"], base["mean"], color="black", zorder=4)
        ax.set_title(task)
        ax.set_xlabel("layers dropped (k)")
        ax.set_ylabel("dev task score x 100 (mean, 95% CI)")
        ax.grid(alpha=0.3)
    if axes and axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize="small", loc="best", title="filled: differs from k=0")
    fig.tight_layout()
    columns = ["panel", *keys, "n_seeds", "mean", "ci_low", "ci_high", "significant"]
    return fig, pd.DataFrame(rows, columns=columns).drop_duplicates(subset=keys)


def plot_score_intervals(stats_csv: str | Path, outputs: Mapping[str, str], style: Mapping | None = None) -> None:
    style = check_style(style)
    table = pd.read_csv(stats_csv, keep_default_na=False, na_values=[""])
    with plt.style.context(style["style"]), plt.rc_context({"font.size": style["font_size"]}):
        fig, data = score_intervals(table, style)
        save(fig, data, *figure_paths(outputs, "score_intervals"), dpi=style["dpi"])
