"""Figures from ``results/summary.csv`` (and the prune steps' layer scores).

Every figure is saved as PNG and PDF with a CSV beside it holding exactly the numbers drawn, so
tests and readers can check a figure without reading pixels. Missing cells are gaps (lines),
hatched cells (heatmap) or left out (Pareto view), never zeros.
"""

from __future__ import annotations

import functools

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dropbench.report import tables as report_tables  # noqa: E402
from dropbench.report.aggregate import AVERAGE, DEGENERATE, MISSING, OK, cell_means  # noqa: E402
from dropbench.plan.grid import BASELINE  # noqa: E402
from dropbench.prune.strategy_names import cls_threshold_of  # noqa: E402

DEFAULT_STYLE = {"style": "default", "dpi": 150, "panel_width": 4.0, "panel_height": 3.4, "font_size": 9}
LINESTYLES = ["-", "--", ":", "-."]


def check_style(style: Mapping | None) -> dict:
    style = {**DEFAULT_STYLE, **(style or {})}
    allowed = ["default", *plt.style.available]
    if style["style"] not in allowed:
        raise ValueError(f"config key 'plots.style': bad value {style['style']!r}; allowed: {', '.join(allowed)}")
    for key in ("dpi", "panel_width", "panel_height", "font_size"):
        if not style[key] > 0:
            raise ValueError(f"config key 'plots.{key}': bad value {style[key]!r}; allowed: a number > 0")
    return style


def save(fig, data: pd.DataFrame, png: str | Path, pdf: str | Path, csv: str | Path, dpi: int) -> None:
    for path in (png, pdf, csv):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    data.to_csv(csv, index=False)
    plt.close(fig)


def with_average(means: pd.DataFrame) -> pd.DataFrame:
    """Per-task means plus an ``average`` task per (model, strategy, k): missing when any task is, and
    degenerate when a task is (and none is missing); a baseline at chance on any task makes the average's."""
    if "underfit" not in means:  # means made before convergence was recorded
        means = means.assign(underfit=False)
    grouped = means.groupby(["model", "strategy", "k"], sort=False)
    average = grouped.agg(
        value=("value", lambda v: v.mean() if v.notna().all() else np.nan),
        status=("status", _average_status),
        at_chance=("at_chance", "any"),
        parameters=("parameters", "mean"),
        latency_ms=("latency_ms", "mean"),
        layers_kept=("layers_kept", "max"),
        underfit=("underfit", "any"),
    ).reset_index()
    average["task"] = AVERAGE
    return pd.concat([means, average], ignore_index=True)


def _average_status(status: pd.Series) -> str:
    for worst in (MISSING, DEGENERATE):
        if (status == worst).any():
            return worst
    return OK


def _strategy_colors(strategies: Iterable[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {s: cycle[i % len(cycle)] for i, s in enumerate(strategies)}


def _panels(count: int, style: dict, max_columns: int = 4):
    columns = min(count, max_columns)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(style["panel_width"] * columns, style["panel_height"] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def threshold_cells_at_their_k(data: pd.DataFrame) -> pd.DataFrame:
    """[CLS] threshold cells (k = 0 in the grid) placed at the number of layers they dropped: the model's
    unpruned depth minus their layers kept (in the average panel, the most layers kept over tasks).
    Cells without a result stay at 0."""
    threshold = data["strategy"].map(lambda name: cls_threshold_of(name) is not None).astype(bool)
    if not threshold.any():
        return data
    depth = data["model"].map(data[data["strategy"] == BASELINE].groupby("model")["layers_kept"].max())
    dropped = (depth - data["layers_kept"]).astype("Float64")
    return data.assign(k=data["k"].astype("Float64").mask(threshold & dropped.notna(), dropped).astype("int64"))


def score_vs_dropped(means: pd.DataFrame, reference_models: Iterable[str], style: dict):
    """One panel per task (and their average, if several), one line per (model, strategy): score x 100 against k.

    Each line starts at the model's unpruned score (k = 0). Reference models (not pruned) are a
    dashed horizontal line at their score.
    """
    reference_models = set(reference_models)
    data = with_average(means) if means["task"].nunique() > 1 else means
    data = threshold_cells_at_their_k(data.assign(value=100 * data["value"]))
    tasks = list(pd.unique(data["task"]))
    pruned = data[~data["model"].isin(reference_models)]
    strategies = [s for s in pd.unique(pruned["strategy"]) if s != BASELINE]
    colors = _strategy_colors(strategies)
    models = list(pd.unique(pruned["model"]))
    rows = []
    fig, axes = _panels(len(tasks), style)
    for ax, task in zip(axes, tasks):
        panel = data[data["task"] == task]
        for m, model in enumerate(models):
            model_rows = panel[panel["model"] == model]
            base = model_rows[model_rows["strategy"] == BASELINE]
            for strategy in strategies:
                line = pd.concat([base, model_rows[model_rows["strategy"] == strategy]]).sort_values("k")
                if line.empty:
                    continue
                label = strategy if len(models) == 1 else f"{model} {strategy}"
                ax.plot(line["k"], line["value"], marker="o", color=colors[strategy],
                        linestyle=LINESTYLES[m % len(LINESTYLES)], label=label)
                underfit = line.get("underfit", pd.Series(False, index=line.index)).astype("boolean").fillna(False).astype(bool)
                # An underfit point (dropbench.train.convergence) is crossed out: its score is the budget's, not the layers'.
                labelled = "underfit" in ax.get_legend_handles_labels()[1]
                ax.scatter(line["k"][underfit], line["value"][underfit], marker="x", color="black", zorder=4,
                           label=None if labelled or not underfit.any() else "underfit")
                rows += [{"panel": task, "model": model, "strategy": strategy, "k": k, "value": v, "status": status,
                          "underfit": bool(u)} for k, v, status, u in zip(line["k"], line["value"], line["status"], underfit)]
            ax.scatter(base["k"], base["value"], color="black", zorder=3)
        for status, color in ((MISSING, "grey"), (DEGENERATE, "tab:red")):
            gap_ks = [r["k"] for r in rows if r["panel"] == task and r["status"] == status and pd.isna(r["value"])]
            if gap_ks:
                # Points without a value sit on the x axis as crosses, so a gap is not read as a short line.
                ax.scatter(gap_ks, [0.02] * len(gap_ks), marker="x", color=color, transform=ax.get_xaxis_transform(),
                           clip_on=False, label=status)
        for model in reference_models:
            ref = panel[(panel["model"] == model) & (panel["strategy"] == BASELINE)]
            if len(ref) and ref["value"].notna().all():
                ax.axhline(ref["value"].iloc[0], color="grey", linestyle="--", linewidth=1, label=f"{model} (reference)")
            rows += [{"panel": task, "model": model, "strategy": BASELINE, "k": 0, "value": v, "status": status}
                     for v, status in zip(ref["value"], ref["status"])]
        gaps = int((panel["status"] == MISSING).sum())
        degenerate = int((panel["status"] == DEGENERATE).sum())
        ax.set_title(task + (f" ({gaps} missing)" if gaps else "") + (f" ({degenerate} degenerate)" if degenerate else ""))
        ax.set_xlabel("layers dropped (k)")
        ax.set_ylabel("dev score x 100")
        ax.grid(alpha=0.3)
    if axes and axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig, pd.DataFrame(rows, columns=["panel", "model", "strategy", "k", "value", "status", "underfit"])


def percent_retained(summary: pd.DataFrame, reference_models: Iterable[str]) -> pd.DataFrame:
    """Long table: (model, strategy, k, task incl. avg7 and average) -> percent of the model's unpruned score
    and its status, for every model but the references: the tables' numbers (``report_tables.retained_long``)."""
    reference_models = set(reference_models)
    models = [m for m in pd.unique(summary["model"]) if m not in reference_models]
    tasks = list(pd.unique(summary["task"]))
    frames = [report_tables.retained_long(summary, model, tasks) for model in models]
    columns = ["model", "strategy", "k", "task", "percent", "status"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def retained_heatmap(summary: pd.DataFrame, reference_models: Iterable[str], style: dict):
    """Rows (model,) strategy and k; columns tasks and their average; colour = percent retained, the same
    numbers as the tables' "percent of full". Cells without a percent are hatched and say why: missing,
    degenerate, or chance (the unpruned model scores at chance on the task, so a percent of it means nothing)."""
    long = percent_retained(summary, reference_models)
    several_models = long["model"].nunique() > 1
    long["row"] = [f"{m} {s} k={k}" if several_models else f"{s} k={k}" for m, s, k in zip(long["model"], long["strategy"], long["k"])]
    rows, columns = list(pd.unique(long["row"])), list(pd.unique(long["task"]))
    grid = long.pivot_table(index="row", columns="task", values="percent", aggfunc="first", dropna=False).reindex(index=rows, columns=columns)
    status = long.pivot_table(index="row", columns="task", values="status", aggfunc="first", dropna=False).reindex(index=rows, columns=columns)
    fig, ax = plt.subplots(figsize=(max(style["panel_width"], 0.9 * len(columns) + 2.5), max(2.0, 0.4 * len(rows) + 1.5)))
    if rows:
        image = ax.imshow(np.ma.masked_invalid(grid.to_numpy(dtype=float)), cmap="viridis", vmin=0, vmax=100, aspect="auto")
        fig.colorbar(image, ax=ax, label="% of the full model")
        for i, row in enumerate(rows):
            for j, column in enumerate(columns):
                value = grid.loc[row, column]
                if pd.isna(value):
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey", linewidth=0))
                    ax.text(j, i, status.loc[row, column], ha="center", va="center", fontsize="x-small", color="dimgrey")
                else:
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize="small",
                            color="white" if value < 60 else "black")
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(rows)), rows)
    else:
        ax.text(0.5, 0.5, "no pruned cells in this grid", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("score retained (% of the unpruned model)")
    fig.tight_layout()
    return fig, long[["model", "strategy", "k", "task", "percent", "status"]]


def pareto_front(cost: pd.Series, score: pd.Series) -> pd.Series:
    """True for points no other point beats on both axes (lower cost and higher score)."""
    front = pd.Series(False, index=cost.index)
    best = -np.inf
    for i in sorted(cost.index, key=lambda i: (cost[i], -score[i])):
        if score[i] > best:
            front[i], best = True, score[i]
    return front


def pareto_points(means: pd.DataFrame, reference_models: Iterable[str]) -> pd.DataFrame:
    """One point per (model, strategy, k): task-average score x 100, parameters, latency, kind."""
    reference_models = set(reference_models)
    average = with_average(means)
    points = average[average["task"] == AVERAGE].copy()
    points["value"] = 100 * points["value"]
    points["kind"] = [
        "reference" if model in reference_models else "full" if strategy == BASELINE else "pruned"
        for model, strategy in zip(points["model"], points["strategy"])
    ]
    # status: ok, degenerate (a task's model predicts one value) or missing; drawn when there is a value
    points = points[["model", "strategy", "k", "kind", "status", "value", "parameters", "latency_ms"]].reset_index(drop=True)
    for cost in ("parameters", "latency_ms"):
        drawn = points[points["value"].notna() & points[cost].notna()]
        points[f"front_{cost}"] = pareto_front(drawn[cost], drawn["value"]).reindex(points.index, fill_value=False)
    return points


EXPORT_RUNTIMES = {"onnx_fp32": ("s", "ONNX Runtime fp32"), "onnx_int8": ("X", "ONNX Runtime int8")}


def export_points(points: pd.DataFrame, exports: pd.DataFrame, tasks: dict[str, set]) -> pd.DataFrame:
    """One point per exported (model, variant, ONNX runtime) exported for every task of its model
    (reports/exports.csv, dropbench.export.exports_report): the mean of its task scores (one seed's fine-tune) against
    the full model's latency of the figure divided by the runtime's speed-up timed beside the full model
    (the median over the tasks' timings). No parameters: an export has the cell's."""
    rows = []
    onnx = exports[exports["runtime"].isin(list(EXPORT_RUNTIMES))]
    for (model, variant, runtime), group in onnx.groupby(["model", "variant", "runtime"], sort=False):
        full = points[(points["model"] == model) & (points["kind"] == "full")]["latency_ms"]
        if set(group["task"]) != tasks.get(model, set()) or full.empty or group["task_score"].isna().any():
            continue
        strategy, k = variant.rsplit("-k", 1)
        rows.append({"model": model, "strategy": strategy, "k": int(k), "kind": "export", "runtime": runtime,
                     "seed": int(group["seed"].iloc[0]), "status": "ok", "value": group["task_score"].mean(),
                     "parameters": np.nan, "latency_ms": full.iloc[0] / group["speedup_vs_full_torch"].median()})
    return pd.DataFrame(rows, columns=[*points.columns[:8], "runtime", "seed"])


def pareto(means: pd.DataFrame, reference_models: Iterable[str], style: dict, exports: pd.DataFrame | None = None):
    """Task-average score against parameters and against measured latency, the Pareto front as a step line;
    the full (unpruned) models are stars, reference (e.g. distilled) models diamonds; with ``exports``
    (reports/exports.csv) the exported variants in ONNX Runtime fp32 and int8 on the latency panel."""
    points = pareto_points(means, reference_models)
    drawn = points[points["value"].notna()]
    exported = None
    if exports is not None and not exports.empty:
        tasks = {model: set(group["task"]) for model, group in means.groupby("model")}
        exported = export_points(points, exports, tasks)
    markers = {"pruned": ("o", 30), "full": ("*", 160), "reference": ("D", 60)}
    colors = _strategy_colors(pd.unique(points.loc[points["kind"] == "pruned", "strategy"]))
    fig, axes = plt.subplots(1, 2, figsize=(2 * style["panel_width"] + 1, style["panel_height"] + 0.6))
    for ax, cost, axis_label, scale in ((axes[0], "parameters", "parameters (millions)", 1e-6), (axes[1], "latency_ms", "latency (ms per batch; the full model's timing x the ratio timed beside it)", 1.0)):
        for (kind, strategy), group in drawn.groupby(["kind", "strategy"], sort=False):
            marker, size = markers[kind]
            color = colors.get(strategy, "black") if kind == "pruned" else ("black" if kind == "full" else "tab:red")
            legend = {"pruned": strategy, "full": "full model", "reference": "reference / distilled"}[kind]
            ax.scatter(group[cost] * scale, group["value"], marker=marker, s=size, color=color, zorder=3, label=legend)
            for _, point in group.iterrows():
                text = point["model"] if kind != "pruned" else f"{point['strategy']} k={point['k']}"
                ax.annotate(text, (point[cost] * scale, point["value"]), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
        front = drawn[drawn[f"front_{cost}"]].sort_values(cost)
        if cost == "latency_ms" and exported is not None:
            for runtime, group in exported.groupby("runtime", sort=False):
                marker, label = EXPORT_RUNTIMES[runtime]
                ax.scatter(group[cost], group["value"], marker=marker, s=40, facecolors="none",
                           edgecolors=[colors.get(s, "black") for s in group["strategy"]], zorder=3,
                           label=f"{label} (seed {group['seed'].iloc[0]})")
                for _, point in group.iterrows():
                    ax.annotate(f"{point['strategy']} k={point['k']} {runtime[5:]}", (point[cost], point["value"]),
                                textcoords="offset points", xytext=(4, -8), fontsize="x-small")
            ax.legend(fontsize="small", loc="best")
        ax.step(front[cost] * scale, front["value"], where="post", color="grey", alpha=0.6, label="Pareto front")
        ax.set_xlabel(axis_label)
        ax.set_ylabel("average dev score x 100")
        ax.grid(alpha=0.3)
    missing = int(points["value"].isna().sum())
    fig.suptitle("average score vs size and speed" + (f" ({missing} not drawn: a task has no score)" if missing else ""))
    axes[0].legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig, points if exported is None else pd.concat([points, exported], ignore_index=True)


def read_layer_scores(pruning_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Per-layer scores from the ``pruning.json`` of prune directories; each names its model, strategy,
    k and scope."""
    rows = []
    for directory in pruning_dirs:
        path = Path(directory) / "pruning.json"
        info = json.loads(path.read_text())
        missing = [key for key in ("model", "scope") if key not in info]
        if missing:
            raise ValueError(f"{path} has no {' or '.join(missing)} (written by an older dropbench); "
                             f"re-run its prune job")
        for layer, score in enumerate(info.get("scores") or []):
            rows.append({
                "model": info["model"], "strategy": info["strategy"], "k": info["k"], "scope": info["scope"],
                "layer": layer, "score": score, "dropped": layer in info["dropped"],
            })
    return pd.DataFrame(rows, columns=["model", "strategy", "k", "scope", "layer", "score", "dropped"])


def layer_scores(scores: pd.DataFrame, style: dict):
    """One panel per model, one line per task whose data scored the layers: the cosine similarity of
    each layer's output to its input (high = the layer changes little, a candidate to drop)."""
    models = list(pd.unique(scores["model"]))
    if not models:
        fig, ax = plt.subplots(figsize=(style["panel_width"] * 1.5, style["panel_height"]))
        ax.text(0.5, 0.5, "No data-driven strategy (e.g. contribution, angular) in this grid:\nno per-layer scores to show.",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig, scores
    fig, axes = _panels(len(models), style)
    for ax, model in zip(axes, models):
        # Every data-driven strategy of a (model, task) shares one scoring; draw it once.
        lines = scores[scores["model"] == model].drop_duplicates(["scope", "layer"])
        for scope, line in lines.groupby("scope", sort=False):
            ax.plot(line["layer"], line["score"], marker="o", label=scope)
        ax.set_title(model)
        ax.set_xlabel("layer")
        ax.set_ylabel("similarity of layer output to input")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title="scored on", loc="best")
    fig.tight_layout()
    return fig, scores


def figure_paths(outputs: Mapping[str, str], name: str) -> tuple[str, str, str]:
    return outputs[name], outputs[f"{name}_pdf"], outputs[f"{name}_data"]


def plot_all(summary_csv: str | Path, outputs: Mapping[str, str], style: Mapping | None = None,
             reference_models: Iterable[str] = (), train_logs: Iterable[str | Path] = (),
             exports_csv: str | Path | None = None) -> None:
    """Draw every summary figure; ``outputs`` maps ``<figure>``, ``<figure>_pdf`` and ``<figure>_data`` to paths.
    With a ``training_loss`` output, the cells' ``train_logs`` draw it (dropbench.report.training_plots); with
    ``exports_csv`` (reports/exports.csv) the Pareto figure draws the exported models' runtimes."""
    style = check_style(style)
    summary = pd.read_csv(summary_csv)
    means = cell_means(summary)
    reference_models = list(reference_models)
    with plt.style.context(style["style"]), plt.rc_context({"font.size": style["font_size"]}):
        exports = pd.read_csv(exports_csv) if exports_csv else None
        for name, draw, data_in in (("score_vs_dropped", score_vs_dropped, means), ("retained_heatmap", retained_heatmap, summary),
                                    ("pareto", functools.partial(pareto, exports=exports), means)):
            fig, data = draw(data_in, reference_models, style)
            save(fig, data, *figure_paths(outputs, name), dpi=style["dpi"])
        if "training_loss" in outputs:
            from dropbench.report.training_plots import plot_training_loss

            plot_training_loss(train_logs, *figure_paths(outputs, "training_loss"), style)


def plot_layer_scores(pruning_dirs: Iterable[str | Path], outputs: Mapping[str, str], style: Mapping | None = None) -> None:
    style = check_style(style)
    with plt.style.context(style["style"]), plt.rc_context({"font.size": style["font_size"]}):
        fig, data = layer_scores(read_layer_scores(pruning_dirs), style)
        save(fig, data, *figure_paths(outputs, "layer_scores"), dpi=style["dpi"])
