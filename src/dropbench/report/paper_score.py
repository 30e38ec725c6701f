"""The one score per task that the paper's tables report, and the paper's 7-task average ``avg7``.

Sajjad et al. report accuracy for SST-2, QNLI, QQP, RTE, MRPC (MRPC/RTE values are multiples of 1/408 and
1/277), most likely matched accuracy for MNLI; the STS-B metric is not stated, so it is configurable
(config key ``paper_score``, e.g. ``{stsb: spearmanr}``; ``mean`` = the mean of the task's metrics).
``avg7`` is the unweighted mean over SST-2, MNLI, QNLI, QQP, STS-B, RTE and MRPC (CoLA and WNLI left out).
"""

from __future__ import annotations

from collections.abc import Mapping

from dropbench.data.tasks import get_task

MEAN = "mean"
PAPER_SCORE = {
    "sst2": "accuracy", "qnli": "accuracy", "qqp": "accuracy", "rte": "accuracy", "mrpc": "accuracy",
    "mnli": "validation_matched_accuracy", "stsb": "pearson", "cola": "matthews_correlation", "wnli": "accuracy",
}
AVG7_TASKS = ("sst2", "mnli", "qnli", "qqp", "stsb", "rte", "mrpc")


def metric_keys(task: str) -> list[str]:
    """The task's metric names as a metrics record holds them (split-prefixed when a task has several dev splits)."""
    spec = get_task(task)
    prefixes = [""] if len(spec.dev_splits) == 1 else [f"{split}_" for split in spec.dev_splits]
    return [f"{prefix}{metric}" for prefix in prefixes for metric in spec.metrics]


def paper_metrics(tasks, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Task -> the metric key its paper score is (or ``mean``); non-GLUE tasks default to their primary metric.

    A bad override is an error naming the config key and the allowed values.
    """
    overrides = dict(overrides or {})
    chosen = {}
    for task in tasks:
        allowed = [*metric_keys(task), MEAN]
        default = PAPER_SCORE.get(task, get_task(task).primary_metric)
        chosen[task] = overrides.pop(task, default)
        if chosen[task] not in allowed:
            raise ValueError(f"config key 'paper_score.{task}': bad value {chosen[task]!r}; allowed: {', '.join(allowed)}")
    if overrides:
        task = sorted(overrides)[0]
        raise ValueError(f"config key 'paper_score.{task}': {task!r} is not a task of this grid; allowed: {', '.join(tasks)}")
    return chosen


def paper_score(metric: str, metrics: Mapping[str, float | None]) -> float | None:
    """The task's paper score from its metrics record (None when the metric is undefined)."""
    values = list(metrics.values()) if metric == MEAN else [metrics[metric]]
    return None if any(v is None for v in values) else sum(values) / len(values)


def avg7_problem(present: Mapping[str, float | None]) -> str | None:
    """Why ``avg7`` cannot be computed from ``present`` (task -> paper score), or None."""
    absent = [task for task in AVG7_TASKS if task not in present]
    if absent:
        return f"needs all of {', '.join(AVG7_TASKS)}; not in the grid: {', '.join(absent)}"
    empty = [task for task in AVG7_TASKS if present[task] is None or present[task] != present[task]]
    if empty:
        return f"no score for {', '.join(empty)}"
    return None
