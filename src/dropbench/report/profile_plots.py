"""Figures of the layer-importance profile (``dropbench.report.layer_profile``): the importance of each layer as
a heatmap (layer x task, one panel per model) and as lines per task (one line per model, 95% intervals
over seeds as error bars); and the rank correlations of the cheap scores with it."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dropbench.report.plots import check_style, figure_paths, save  # noqa: E402


def layer_importance(importance: pd.DataFrame, style: dict):
    models = list(dict.fromkeys(importance["model"]))
    tasks = list(dict.fromkeys(importance["task"]))
    columns = max(len(models), len(tasks))
    fig, axes = plt.subplots(2, columns, squeeze=False,
                             figsize=(style["panel_width"] * columns, style["panel_height"] * 2))
    values = 100 * importance["importance"]
    limit = float(np.nanmax(np.abs(values))) if values.notna().any() else 1.0
    for ax, model in zip(axes[0], models):
        table = importance[importance["model"] == model].pivot(index="layer", columns="task", values="importance")[tasks] * 100
        image = ax.imshow(table.to_numpy(dtype=float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_yticks(range(len(table)), [str(i) for i in table.index])
        ax.set_ylabel("layer dropped (1 = lowest)")
        ax.set_title(f"{model}: importance (points)")
        for (row, col), value in np.ndenumerate(table.to_numpy(dtype=float)):
            ax.text(col, row, "" if np.isnan(value) else f"{value:.1f}", ha="center", va="center", fontsize="small")
        fig.colorbar(image, ax=ax, shrink=0.8)
    for ax, task in zip(axes[1], tasks):
        for model in models:
            line = importance[(importance["model"] == model) & (importance["task"] == task)].sort_values("layer")
            mean = 100 * line["importance"]
            below, above = mean - 100 * line["ci_low"], 100 * line["ci_high"] - mean
            ax.errorbar(line["layer"], mean, yerr=[below.fillna(0), above.fillna(0)], marker="o", capsize=3, label=model)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("layer dropped (1 = lowest)")
        ax.set_ylabel("score fall when dropped (points)")
        ax.set_title(task)
        ax.legend(fontsize="small")
    for ax in [*axes[0][len(models):], *axes[1][len(tasks):]]:
        ax.axis("off")
    fig.tight_layout()
    return fig, importance


def score_correlations(correlations: pd.DataFrame, style: dict):
    scores = list(dict.fromkeys(correlations["score"]))
    groups = list(dict.fromkeys(zip(correlations["model"], correlations["task"])))
    fig, ax = plt.subplots(figsize=(max(style["panel_width"], 1.2 * len(scores) * max(1, len(groups)) / 2), style["panel_height"]))
    width = 0.8 / max(1, len(groups))
    for i, (model, task) in enumerate(groups):
        rows = correlations[(correlations["model"] == model) & (correlations["task"] == task)].set_index("score").reindex(scores)
        x = np.arange(len(scores)) + (i - (len(groups) - 1) / 2) * width
        bars = ax.bar(x, rows["spearman_rho"].fillna(0), width, label=f"{model} {task} (n = {int(rows['n_layers'].iloc[0])})")
        for bar, p in zip(bars, rows["spearman_p"]):
            if not np.isnan(p):
                ax.annotate(f"p={p:.2g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom" if bar.get_height() >= 0 else "top", fontsize="x-small")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(scores)), scores, rotation=15)
    ax.set_ylim(-1.1, 1.1)
    ax.set_ylabel("Spearman rho with measured importance")
    ax.set_title("Does a cheap layer score predict the damage of dropping it?")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig, correlations


def plot_profile(importance: pd.DataFrame, correlations: pd.DataFrame, outputs: Mapping[str, str], style: Mapping | None = None) -> None:
    style = check_style(style)
    with plt.style.context(style["style"]), plt.rc_context({"font.size": style["font_size"]}):
        for name, draw, table in (("layer_importance", layer_importance, importance),
                                  ("layer_score_correlation", score_correlations, correlations)):
            fig, data = draw(table, style)
            save(fig, data, *figure_paths(outputs, name), dpi=style["dpi"])
