"""All cells into one tidy table, and the paper-style wide table (strategies x k by tasks)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dropbench.cell_record import read_cell_metrics
from dropbench.grid import BASELINE

log = logging.getLogger(__name__)

CELL_COLUMNS = ["model", "strategy", "k", "task", "seed"]


def tidy_rows(record: dict) -> list[dict]:
    """One row per (cell, metric); ``task_score`` is one of the metrics."""
    shared = {
        **{key: record[key] for key in CELL_COLUMNS},
        "num_layers_pretrained": record["num_layers_pretrained"],
        "layers_kept": record["num_layers"],
        "dropped_layers": " ".join(map(str, record["dropped_layers"])),
        "parameters": record["parameters"],
        "latency_ms": record["inference"]["latency_ms_median"],
        "throughput": record["inference"]["throughput_examples_per_s"],
        "train_rows": record["train_rows"],
        "train_rows_available": record["train_rows_available"],
        "train_subsampled": record["train_rows"] < record["train_rows_available"],
        "train_seconds": record["train_seconds"],
    }
    metrics = {**record["metrics"], "task_score": record["task_score"]}
    return [{**shared, "metric": name, "value": value} for name, value in metrics.items()]


def load_summary(metrics_paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in metrics_paths:
        rows += tidy_rows(read_cell_metrics(path))
    return pd.DataFrame(rows).sort_values(CELL_COLUMNS + ["metric"], ignore_index=True)


def wide_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows (model, strategy, k), columns tasks + average: task score, mean over seeds."""
    scores = summary[summary["metric"] == "task_score"]
    table = scores.pivot_table(index=["model", "strategy", "k", "layers_kept"], columns="task", values="value", aggfunc="mean")
    table["average"] = table.mean(axis=1, skipna=False)
    return table.reset_index()


def percent_of_baseline(table: pd.DataFrame) -> pd.DataFrame:
    score_columns = [c for c in table.columns if c not in ("model", "strategy", "k", "layers_kept")]
    out = table.copy()
    for model, rows in table.groupby("model"):
        base = rows[rows["strategy"] == BASELINE]
        if base.empty:
            out.loc[rows.index, score_columns] = float("nan")
            continue
        out.loc[rows.index, score_columns] = 100 * rows[score_columns] / base[score_columns].iloc[0]
    return out


def to_markdown(table: pd.DataFrame, title: str) -> str:
    return f"### {title}\n\n" + table.to_markdown(index=False, floatfmt=".2f", missingval="missing") + "\n"


def aggregate(metrics_paths: list[str], summary_csv: str | Path, wide_md: str | Path) -> pd.DataFrame:
    summary = load_summary(metrics_paths)
    Path(summary_csv).parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(summary_csv, index=False)
    table = wide_table(summary)
    scaled = table.copy()
    score_columns = [c for c in table.columns if c not in ("model", "strategy", "k", "layers_kept")]
    scaled[score_columns] = 100 * table[score_columns]
    Path(wide_md).parent.mkdir(parents=True, exist_ok=True)
    Path(wide_md).write_text(
        to_markdown(scaled, "Dev score x 100 (task score = mean of the task's official metrics)")
        + "\n"
        + to_markdown(percent_of_baseline(table), "Percent of the unpruned model's score")
    )
    log.info("%d cells, %d rows -> %s", summary[CELL_COLUMNS].drop_duplicates().shape[0], len(summary), summary_csv)
    return summary
