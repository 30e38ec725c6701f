"""When a report may draw a claim from a full model's scores: the statuses the tables use.

A report that derives a claim from a model's scores on a task (which layer matters most, how the layers
rank, how much of the full model a pruned one retains, whether a finding holds) withholds it when the
full model (the baseline cell ``none-k0``) is at chance or degenerate on that task, and says why. The
statuses are the tables' own, from ``aggregate.cell_means`` over the baseline rows: ``at_chance`` of the
paper score (where the percent tables print ``n/a (chance)``) or of the task score (which their averages
leave out), and status ``degenerate`` (the model predicts one value on a dev split for a seed). A
baseline without a result withholds nothing here: there is nothing to draw a claim from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from dropbench.report import aggregate
from dropbench.plan.grid import BASELINE

# Columns cell_means reads besides the statuses; a summary without them still has statuses to judge.
_OPTIONAL = ("chance", "seed", "layers_kept", "parameters", "latency_ms")


def withheld(summary: pd.DataFrame, model: str, task: str) -> str | None:
    """Why no claim may rest on ``model``'s full model on ``task`` (a clause), or None when one may.
    A summary without statuses (``status``, ``at_chance``) withholds nothing."""
    if not {"status", "at_chance"} <= set(summary.columns):
        return None
    rows = summary[(summary["model"] == model) & (summary["strategy"] == BASELINE) & (summary["task"] == task)]
    rows = rows.reindex(columns=[*rows.columns, *(c for c in _OPTIONAL if c not in rows.columns)])
    reasons = []
    for metric in ("paper_score", "task_score"):
        means = aggregate.cell_means(rows, metric)
        if means.empty or means["status"].iloc[0] == aggregate.MISSING:
            continue
        entry = means.iloc[0]
        if entry["status"] == aggregate.DEGENERATE:
            reasons.append(f"the full model is degenerate on {task} (it predicts one value on a dev split for at least one seed)")
        elif entry["at_chance"]:
            level = f": {100 * entry['value']:.1f} against chance {100 * entry['chance']:.1f}" if pd.notna(entry["chance"]) else ""
            reasons.append(f"the full model scores at chance on {task} ({metric.replace('_', ' ')}{level}; "
                           f"the tables print {aggregate.CHANCE_TEXT})")
        if reasons:
            break
    return reasons[0] if reasons else None


def withheld_tasks(summary: pd.DataFrame, models: Iterable[str], tasks: Iterable[str]) -> dict[tuple[str, str], str]:
    """(model, task) -> why its claims are withheld, for the pairs whose full model is at chance or degenerate."""
    tasks = list(tasks)
    found = {(model, task): withheld(summary, model, task) for model in models for task in tasks}
    return {key: reason for key, reason in found.items() if reason}


def notes(reasons: Mapping[tuple[str, str], str]) -> list[str]:
    """One sentence per withheld (model, task), for a report."""
    return [f"Withheld for {model} on {task}: {reason}, so what dropping layers does to it says nothing about the layers."
            for (model, task), reason in reasons.items()]
