"""The grid's statistics table (results/stats.csv) from the summary and the cells' dev predictions.

Rows with an empty ``comparison`` hold the mean, sd and 95% t-interval over seeds of every
(model, strategy, k, task, metric) of the summary. Rows with ``comparison`` = ``none-k0`` test the
variant against the unpruned model, rows with ``comparison`` = ``<strategy>-k<k>`` test it against
another strategy at the same k (delta = this row's variant minus the comparison), each on the seeds
both have (paired permutation test, stats.paired_permutation_test). ``p_adjusted``: Holm over all
tests of the same metric across the grid. ``n_diverged``: runs of the variant flagged as diverged.

With ``retry_diverged`` (``dropbench.report.retries``) a diverged run replaced by a retry (summary status
``retried``) is left out of the intervals and tests, though still counted in ``n_diverged``; the retry
is paired with the other variants' runs of the seed it replaces.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dropbench.evaluate import predictions
from dropbench.report import stats
from dropbench.runtime.atomic import atomic_file
from dropbench.data.glue import get_task
from dropbench.plan.cells import BASELINE, Cell, variant_name
from dropbench.plan.records import CorruptResultError

log = logging.getLogger(__name__)

GROUP = ["model", "strategy", "k", "task"]
STATS_COLUMNS = [
    *GROUP, "metric", "n_seeds", "mean", "sd", "ci_low", "ci_high",
    "comparison", "n_paired_seeds", "delta", "p_value", "p_adjusted", "significant", "n_diverged",
]
DIVERGED_COLUMNS = [*GROUP, "seed", "task_score", "chance_task_score", "best_reference"]


def metric_layout(task: str) -> list[tuple[str, str, str]]:
    """(dev split, metric, name in the metrics record) of every official metric of ``task``."""
    spec = get_task(task)
    prefix = (lambda split: "") if len(spec.dev_splits) == 1 else (lambda split: f"{split}_")
    return [(split, name, prefix(split) + name) for split in spec.dev_splits for name in spec.metrics]


def load_runs(paths: Iterable[str | Path]) -> dict[Cell, dict]:
    """Each cell's predictions, checked to be its own: CorruptResultError naming the file if one belongs to
    another cell, is not the file its metrics.json records, or has other rows than it
    (``integrity.predictions_problem``; planning finds the same and re-runs the cell)."""
    from dropbench.plan.integrity import predictions_problem

    runs = {}
    for path in map(Path, paths):
        cell = Cell.from_path(path)
        metrics = path.parent / "metrics.json"
        record = json.loads(metrics.read_text()) if metrics.exists() else None
        problem = predictions_problem(path, cell, record)
        if problem:
            raise CorruptResultError(f"damaged result {path}: {problem}; run snakemake again to recompute the cell")
        runs[cell] = predictions.load(path)
    return runs


def run_scores(runs: Mapping[Cell, dict]) -> dict[Cell, dict[str, float]]:
    """Every official metric and task_score per run, recomputed from its predictions."""
    scores = {}
    for cell, run in runs.items():
        computed = stats.run_metrics(metric_layout(cell.task), {s: v["prediction"] for s, v in run.items()}, {s: v["label"] for s, v in run.items()})
        scores[cell] = {name: float(values[0]) for name, values in computed.items()}
    return scores


def diverged_runs(runs: Mapping[Cell, dict]) -> pd.DataFrame:
    """Runs at chance while another seed of the same cell, or the unpruned model, is clearly above."""
    scores = run_scores(runs)
    rows = []
    for cell, run in runs.items():
        levels = stats.chance_levels(metric_layout(cell.task), {s: v["label"] for s, v in run.items()})
        references = [
            score["task_score"] for other, score in scores.items()
            if other != cell and (other.model, other.task) == (cell.model, cell.task)
            and ((other.strategy, other.k) == (cell.strategy, cell.k) or other.is_baseline)
        ]
        if stats.diverged(scores[cell], levels, scores[cell]["task_score"], references):
            rows.append({
                **cell.as_dict(),
                "task_score": scores[cell]["task_score"],
                "chance_task_score": sum(levels.values()) / len(levels),
                "best_reference": max(r for r in references if not math.isnan(r)),
            })
    return pd.DataFrame(rows, columns=DIVERGED_COLUMNS)


def seed_rows(summary: pd.DataFrame, diverged: pd.DataFrame) -> pd.DataFrame:
    done = summary[summary["status"].isin(["ok", "degenerate"])]  # a degenerate cell's defined metrics count
    counts = diverged.groupby(GROUP).size().to_dict() if len(diverged) else {}
    rows = []
    for key, group in done.groupby([*GROUP, "metric"], sort=False):
        rows.append({
            **dict(zip([*GROUP, "metric"], key)),
            **stats.seed_interval(group["value"].astype(float).tolist()),
            "comparison": "",
            "n_diverged": counts.get(key[:4], 0),
        })
    columns = [*GROUP, "metric", "n_seeds", "mean", "sd", "ci_low", "ci_high", "comparison", "n_diverged"]
    return pd.DataFrame(rows, columns=columns)


def comparisons(groups: Iterable[tuple]) -> list[tuple[tuple, tuple]]:
    """(variant, reference) pairs of (model, strategy, k, task) groups: every pruned variant against
    the unpruned one, and strategies against each other at equal k (earlier in ``groups`` minus later)."""
    groups = list(dict.fromkeys(groups))
    pairs = []
    for model, task in dict.fromkeys((g[0], g[3]) for g in groups):
        variants = [g for g in groups if g[0] == model and g[3] == task and g[1] != BASELINE]
        baseline = (model, BASELINE, 0, task)
        if baseline in groups:
            pairs += [(variant, baseline) for variant in variants]
        pairs += [(a, b) for a, b in itertools.combinations(variants, 2) if a[2] == b[2]]
    return pairs


def paired_rows(runs: Mapping[Cell, dict], order: Iterable[tuple], resamples: int, seed: int) -> pd.DataFrame:
    """The paired tests of the groups (``Cell.group``) in ``runs``, in ``order`` (the summary's: config order,
    baseline first)."""
    present = {cell.group for cell in runs}
    rows = []
    for variant, reference in comparisons(g for g in order if g in present):
        seeds = sorted({c.seed for c in runs if c.group == variant} & {c.seed for c in runs if c.group == reference})
        if not seeds:
            continue
        a = [runs[Cell(*variant, s)] for s in seeds]
        b = [runs[Cell(*reference, s)] for s in seeds]
        for s, (run_a, run_b) in zip(seeds, zip(a, b)):
            predictions.check_paired(run_a, run_b, f"{variant} vs {reference}, seed {s}")
        for metric, (delta, p) in stats.paired_permutation_test(metric_layout(variant[3]), a, b, resamples, seed).items():
            rows.append({
                **dict(zip(GROUP, variant)), "metric": metric,
                "comparison": variant_name(reference[1], reference[2]), "n_paired_seeds": len(seeds),
                "delta": delta, "p_value": p,
            })
    return pd.DataFrame(rows, columns=[*GROUP, "metric", "comparison", "n_paired_seeds", "delta", "p_value"])


def tested_runs(runs: Mapping[Cell, dict], summary: pd.DataFrame) -> dict[Cell, dict]:
    """``runs`` without those replaced by a retry, each retry keyed by the first seed of its chain."""
    if "retry_of" not in summary.columns:
        return dict(runs)
    scores = summary[summary["metric"] == "task_score"]
    keys = [Cell(m, s, int(k), t, int(seed)) for m, s, k, t, seed in scores[[*GROUP, "seed"]].itertuples(index=False)]
    replaced = {key for key, status in zip(keys, scores["status"]) if status == "retried"}
    retry_of = {key: int(of) for key, of in zip(keys, scores["retry_of"]) if pd.notna(of)}

    def first(cell):
        while cell in retry_of:
            cell = cell.at_seed(retry_of[cell])
        return cell

    return {first(cell): run for cell, run in runs.items() if cell not in replaced}


def stats_table(
    summary: pd.DataFrame, runs: Mapping[Cell, dict], diverged: pd.DataFrame, resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    intervals = seed_rows(summary, diverged)
    order = [tuple(row) for row in summary[GROUP].itertuples(index=False)]
    tests = paired_rows(runs, order, resamples, seed)
    tests["p_adjusted"] = float("nan")
    for metric, index in tests.groupby("metric").groups.items():
        tests.loc[index, "p_adjusted"] = stats.holm(tests.loc[index, "p_value"].tolist())
        floor = len(index) / (resamples + 1)  # the smallest Holm-adjusted p these resamples can give
        if floor >= alpha:
            log.warning("%s: %d tests with %d resamples cannot reach p_adjusted < %g (smallest possible %.3g); "
                        "set statistics.resamples above %d", metric, len(index), resamples, alpha, floor, math.ceil(len(index) / alpha))
    tests["significant"] = tests["p_adjusted"] < alpha
    per_group = intervals.drop(columns="comparison")
    tests = tests.merge(per_group, on=[*GROUP, "metric"], how="left")
    table = pd.concat([intervals, tests], ignore_index=True)
    table["n_diverged"] = table["n_diverged"].fillna(0).astype(int)
    return table.reindex(columns=STATS_COLUMNS)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def write_stats(summary_csv, predictions_paths, stats_csv, diverged_csv, resamples: int, alpha: float, seed: int) -> pd.DataFrame:
    summary = pd.read_csv(summary_csv)
    runs = load_runs(predictions_paths)
    diverged = diverged_runs(runs)
    table = stats_table(summary, tested_runs(runs, summary), diverged, resamples, alpha, seed)
    write_csv(table, stats_csv)
    write_csv(diverged, diverged_csv)
    return table
