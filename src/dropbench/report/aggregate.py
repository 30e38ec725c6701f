"""All cells into one tidy table, the cells still missing, and the paper-style tables per model.

A cell of the expected grid without a metrics file is kept as ``task_score`` and ``paper_score`` rows
with no value and status ``missing`` (or ``failed`` when ``results/failed`` has a record for it), so
that tables and figures show a gap, never a zero. A cell whose model predicts one value on a dev split
has status ``degenerate``: it has a result, but its undefined metrics are empty. Each row carries the
metric's chance level from the dev labels (``chance``) and whether the value is at chance
(``at_chance``, see ``dropbench.evaluate.chance``); percent of a full model that is at chance is not reported.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dropbench.evaluate.chance import CHANCE_MARGINS, at_chance
from dropbench.train.convergence import UNDERFIT_FIT
from dropbench.plan.cells import BASELINE, CELL_KEYS, Cell
from dropbench.report.paper_score import AVG7_TASKS, MEAN, avg7_problem, metric_keys, paper_metrics, paper_score
from dropbench.plan.records import CorruptResultError, read_cell_metrics
from dropbench.prune.strategies import cls_threshold_of

log = logging.getLogger(__name__)

CELL_COLUMNS = list(CELL_KEYS)
OK, DEGENERATE, MISSING, FAILED = "ok", "degenerate", "missing", "failed"
HAS_RESULT = (OK, DEGENERATE)
SUMMARY_COLUMNS = [
    *CELL_COLUMNS[:3], "layers_kept", *CELL_COLUMNS[3:], "status", "metric", "value", "chance", "at_chance",
    "parameters", "latency_ms", "latency_relative", "throughput", "latency_protocol", "num_layers_pretrained", "dropped_layers",
    "train_rows", "train_rows_available", "train_subsampled", "train_seconds", "scored_on", "retry_of", "reason",
    "head", "learning_rate", "train_fit", "dev_fit", "underfit",
]
INT_COLUMNS = ["layers_kept", "parameters", "num_layers_pretrained", "train_rows", "train_rows_available", "retry_of"]
AVERAGE = "average"
AVG7 = "avg7"
MISSING_TEXT = "missing"
NA_TEXT = "n/a"
CHANCE_TEXT = "n/a (chance)"
DEGENERATE_MARK = "*"
UNDERFIT = "underfit"  # a table entry with a result, one of whose seeds is underfit (dropbench.train.convergence)
UNDERFIT_MARK = "\u00b0"
RETRIED = "retried"  # a diverged run re-run with another seed (retry_diverged): kept, but left out of every mean
# significance marks (stats.csv): against the unpruned model; against another strategy at the same k
VS_FULL_MARK, VS_STRATEGY_MARK = "\u2020", "\u2021"


def cell_key(cell: Mapping) -> tuple:
    return tuple(cell[key] if key not in ("k", "seed") else int(cell[key]) for key in CELL_COLUMNS)


def read_latency(paths: Iterable[str | Path]) -> dict[tuple, dict]:
    """(model, strategy, k, scope) -> the ``measure_latency`` result of that architecture, its
    ``latency_ms`` expressed in its full model's figure (``in_full_models_figure``)."""
    from dropbench.plan.integrity import latency_problem

    latency = {}
    for path in paths:
        if problem := latency_problem(path):  # planning finds the same and re-times the architecture
            raise CorruptResultError(f"damaged result {path}: {problem}; run snakemake again to measure it again")
        result = json.loads(Path(path).read_text())
        arch = result["architecture"]
        latency[(arch["model"], arch["strategy"], int(arch["k"]), arch["scope"])] = result
    return in_full_models_figure(latency)


def in_full_models_figure(latency: Mapping[tuple, dict]) -> dict[tuple, dict]:
    """A pruned architecture is timed beside its full model (dropbench.evaluate.latency); its figure is its ratio to
    the full model times the full model's figure, the lowest of all the full model's timings in the run
    (its own job's and those beside each pruned architecture): other load only ever adds time, and the
    machine's speed drifts between jobs, while a ratio taken in one job does not. What each job measured
    stays in ``latency_ms_measured``. A record without a ratio (made before ratios were taken) keeps its own figure."""
    full_timings: dict[str, list[float]] = {}
    for (model, strategy, _, _), result in latency.items():
        timing = result["latency_ms"] if strategy == BASELINE else result.get("full_latency_ms_beside")
        if timing is not None:
            full_timings.setdefault(model, []).append(timing)
    expressed = {}
    for key, result in latency.items():
        model, strategy = key[0], key[1]
        relative = 1.0 if strategy == BASELINE else result.get("relative_to_full")
        figure = result["latency_ms"] if relative is None else relative * min(full_timings[model])
        expressed[key] = {**result, "latency_ms_measured": result["latency_ms"], "latency_ms": figure,
                          "relative_to_full": relative,
                          "throughput_examples_per_s": result["protocol"]["batch_size"] / (figure / 1000)}
    return expressed


def cell_latency(record: Mapping, latency: Mapping[tuple, dict]) -> dict | None:
    """The cell's architecture's latency: measured per task for data-driven strategies, else once ("any")."""
    model, strategy, k = record["model"], record["strategy"], int(record["k"])
    return latency.get((model, strategy, k, record["task"])) or latency.get((model, strategy, k, "any"))


def tidy_rows(record: dict, paper_metric: str, latency: dict | None = None) -> list[dict]:
    """One row per (cell, metric); ``task_score`` (mean of the official metrics) and ``paper_score``
    (the one the paper reports, ``paper_metric``) are metrics too. ``latency``: the architecture's
    ``measure_latency`` result (empty columns without one)."""
    shared = {
        **{key: record[key] for key in CELL_COLUMNS},
        "status": record["status"],
        "num_layers_pretrained": record["num_layers_pretrained"],
        "layers_kept": record["num_layers"],
        "dropped_layers": " ".join(map(str, record["dropped_layers"])),
        "parameters": record["parameters"],
        "latency_ms": latency["latency_ms"] if latency else None,
        "latency_relative": latency["relative_to_full"] if latency else None,
        "throughput": latency["throughput_examples_per_s"] if latency else None,
        "latency_protocol": json.dumps(latency["protocol"], sort_keys=True) if latency else "",
        "train_rows": record["train_rows"],
        "train_rows_available": record["train_rows_available"],
        "train_subsampled": record["train_rows"] < record["train_rows_available"],
        "train_seconds": record["train_seconds"],
        "scored_on": record.get("scored_on", ""),
        "reason": "",
        "head": record.get("head", NATIVE_HEAD),
        "learning_rate": record.get("learning_rate"),
        **fit_columns(record.get("fit")),
    }
    values = {**record["metrics"], "task_score": record["task_score"], "paper_score": paper_score(paper_metric, record["metrics"])}
    chance = {**record["chance"], "task_score": sum(record["chance"].values()) / len(record["chance"])}
    chance["paper_score"] = chance["task_score"] if paper_metric == "mean" else chance[paper_metric]
    parts = {name: [name] for name in record["metrics"]}
    parts.update(task_score=list(record["metrics"]), paper_score=list(record["metrics"]) if paper_metric == "mean" else [paper_metric])
    rows = []
    for name, value in values.items():
        flag = any(at_chance(part, record["metrics"][part], record["chance"][part]) for part in parts[name])
        rows.append({**shared, "metric": name, "value": float("nan") if value is None else value,
                     "chance": chance[name], "at_chance": flag})
    return rows


NATIVE_HEAD = "native"  # records written before the head was a setting


def fit_columns(fit: Mapping | None) -> dict:
    """train_fit, dev_fit (mean over the dev splits) and underfit of a record's ``fit`` block (empty without)."""
    if not fit:
        return {"train_fit": None, "dev_fit": None, "underfit": None}
    dev = [split["fit"] for split in fit["dev"].values() if split["fit"] is not None]
    return {"train_fit": fit["train_fit"], "dev_fit": sum(dev) / len(dev) if dev else None, "underfit": fit["underfit"]}


def read_failed(failed_dir: str | Path | None) -> dict[tuple, str]:
    """Cells recorded under ``failed_dir`` (any ``*.json`` below it) -> the reason given, if any.

    A record names its cell by the keys model, strategy, k, task, seed; without them the path is read
    as ``<model>/<strategy>-k<k>/<task>/seed<seed>.json`` (the cell's results path).
    """
    if failed_dir is None or not Path(failed_dir).is_dir():
        return {}
    failed = {}
    for path in sorted(Path(failed_dir).rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring unreadable failure record %s (%s)", path, err)
            continue
        record = record if isinstance(record, dict) else {}
        cell = record if all(key in record for key in CELL_COLUMNS) else _cell_from_failed_path(path, failed_dir)
        if cell is None:
            log.warning("ignoring failure record %s: names no cell", path)
            continue
        reason = record.get("error") or record.get("reason") or record.get("message") or ""
        failed[cell_key(cell)] = str(reason).strip().splitlines()[-1] if str(reason).strip() else ""
    return failed


def _cell_from_failed_path(path: Path, failed_dir) -> dict | None:
    try:
        return Cell.from_path(path.relative_to(failed_dir)).as_dict()
    except ValueError:
        return None


def missing_rows(cell: Mapping, reason: str | None) -> list[dict]:
    shared = {**{key: cell[key] for key in CELL_COLUMNS}, "status": MISSING if reason is None else FAILED,
              "value": float("nan"), "reason": reason or ""}
    return [{**shared, "metric": metric} for metric in ("task_score", "paper_score")]


def load_summary(
    metrics_paths: Iterable[str | Path],
    expected: Iterable[Mapping] | None = None,
    failed: Mapping[tuple, str] | None = None,
    order: Mapping[str, list] | None = None,
    paper_score_metrics: Mapping[str, str] | None = None,
    latency_paths: Iterable[str | Path] = (),
    retries: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The tidy table: every metrics file, plus rows for each expected cell that has none.

    ``order`` may give the config's order of ``models``, ``strategies`` and ``tasks`` for the rows
    (the baseline always comes first); anything not named sorts after, alphabetically.
    ``paper_score_metrics`` overrides the paper score's metric per task (config key ``paper_score``).
    ``retries`` (``dropbench.report.retries.RETRY_COLUMNS``): a retry run's ``retry_of`` is the seed of the
    diverged run it replaces, whose rows get status ``retried``.
    """
    records = [read_cell_metrics(path) for path in metrics_paths]
    latency = read_latency(latency_paths)
    expected = list(expected or [])
    tasks = list(dict.fromkeys([cell["task"] for cell in [*records, *expected]]))
    chosen = paper_metrics(tasks, {t: m for t, m in (paper_score_metrics or {}).items() if t in tasks})
    rows, seen = [], set()
    for record in records:
        seen.add(cell_key(record))
        rows += tidy_rows(record, chosen[record["task"]], cell_latency(record, latency))
    failed = failed or {}
    for cell in expected:
        if cell_key(cell) not in seen:
            rows += missing_rows(cell, failed.get(cell_key(cell)))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({column: "Float64" for column in INT_COLUMNS})
    if retries is not None and len(retries):
        _mark_retries(summary, retries)
    # A missing cell still knows its depth when another cell of its model has a result.
    depth = summary["model"].map(summary.groupby("model")["num_layers_pretrained"].max())
    summary["num_layers_pretrained"] = summary["num_layers_pretrained"].fillna(depth)
    # ([CLS] threshold cells have k = 0 and an unknown depth until they ran.)
    threshold_cell = summary["strategy"].map(lambda name: cls_threshold_of(name) is not None).astype(bool)
    summary["layers_kept"] = summary["layers_kept"].fillna((summary["num_layers_pretrained"] - summary["k"]).mask(threshold_cell))
    summary["train_subsampled"] = summary["train_subsampled"].astype("boolean")
    summary["at_chance"] = summary["at_chance"].astype("boolean")
    summary["underfit"] = summary["underfit"].astype("boolean")
    summary = summary.astype({column: "Int64" for column in INT_COLUMNS})
    return sort_cells(summary, order)


def _mark_retries(summary: pd.DataFrame, retries: pd.DataFrame) -> None:
    keys = list(zip(summary["model"], summary["strategy"], summary["k"].astype(int), summary["task"], summary["seed"].astype(int)))
    for r in retries.itertuples(index=False):
        variant = (r.model, r.strategy, int(r.k), r.task)
        replaced = [key == (*variant, int(r.seed)) for key in keys]
        summary.loc[replaced, "status"] = RETRIED
        summary.loc[[key == (*variant, int(r.retry_seed)) for key in keys], "retry_of"] = int(r.seed)


def sort_cells(frame: pd.DataFrame, order: Mapping[str, list] | None = None) -> pd.DataFrame:
    order = dict(order or {})
    order["strategies"] = [BASELINE, *[s for s in order.get("strategies", []) if s != BASELINE]]
    ranks = {"model": order.get("models", []), "strategy": order["strategies"], "task": order.get("tasks", [])}

    def rank(column: pd.Series) -> pd.Series:
        named = ranks.get(column.name)
        if named is None:
            return column
        position = {value: i for i, value in enumerate(named)}
        return column.map(lambda value: (position.get(value, len(named)), str(value)))

    by = [c for c in [*CELL_COLUMNS, "metric"] if c in frame.columns]
    return frame.sort_values(by, key=rank, ignore_index=True, kind="stable")


def missing_cells(summary: pd.DataFrame) -> pd.DataFrame:
    scores = summary[summary["metric"] == "task_score"]
    return scores.loc[~scores["status"].isin((*HAS_RESULT, RETRIED)), [*CELL_COLUMNS, "status", "reason"]].reset_index(drop=True)


def missing_count(summary: pd.DataFrame) -> tuple[int, int]:
    """(cells without a result, cells expected); a degenerate cell has a result. A retried (diverged)
    run and its retry count as one cell."""
    scores = summary[(summary["metric"] == "task_score") & (summary["status"] != RETRIED)]
    return int((~scores["status"].isin(HAS_RESULT)).sum()), len(scores)


def cell_means(summary: pd.DataFrame, metric: str = "task_score") -> pd.DataFrame:
    """One metric (default the task score), parameters and latency per (model, strategy, k, task), the
    mean over seeds; ``status`` is missing unless every seed has a result, else degenerate if one seed is.

    The value is missing unless every seed has one (a partial mean would pass for a result). Runs
    replaced by a retry (status ``retried``) are left out.
    """
    scores = summary[(summary["metric"] == metric) & (summary["status"] != RETRIED)]
    if "underfit" not in scores:  # a summary made before convergence was recorded
        scores = scores.assign(underfit=pd.NA)
    grouped = scores.groupby(["model", "strategy", "k", "task"], sort=False, dropna=False)
    means = grouped.agg(
        value=("value", "mean"),
        complete=("value", lambda values: bool(values.notna().all())),
        status=("status", _entry_status),
        at_chance=("at_chance", lambda flags: bool(flags.fillna(True).any())),
        chance=("chance", "mean"),
        seeds=("seed", "nunique"),
        layers_kept=("layers_kept", "max"),
        parameters=("parameters", "mean"),
        latency_ms=("latency_ms", "mean"),
        underfit=("underfit", lambda flags: bool(flags.astype("boolean").fillna(False).any())),
    ).reset_index()
    means.loc[~means["complete"], "value"] = float("nan")
    return means


def _entry_status(status: pd.Series) -> str:
    if not status.isin(HAS_RESULT).all():
        return MISSING
    return DEGENERATE if (status == DEGENERATE).any() else OK


def seed_statistics(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per (model, strategy, k, task, metric), over the
    cells that have a value (``seeds`` says how many did)."""
    done = summary[summary["status"].isin(HAS_RESULT) & summary["value"].notna()]
    grouped = done.groupby(["model", "strategy", "k", "layers_kept", "task", "metric"], sort=False)
    return grouped["value"].agg(mean="mean", std="std", seeds="count").reset_index()


@dataclass
class Table:
    """Scores (0-1 scale) per (strategy, k) row, and per score a mark: ok, degenerate, missing or chance."""

    values: pd.DataFrame
    marks: pd.DataFrame
    flags: pd.DataFrame | None = None  # significance marks per score (see significance_flags)


def _rows(summary: pd.DataFrame) -> pd.MultiIndex:
    scores = summary[summary["metric"] == "task_score"]
    return pd.MultiIndex.from_tuples(list(dict.fromkeys(zip(scores["strategy"], scores["k"]))), names=["strategy", "k"])


def _entries(summary: pd.DataFrame, task: str, metric: str, rows: pd.MultiIndex) -> pd.DataFrame:
    """value, status, at_chance, chance and layers_kept of one (task, metric) per row, mean over seeds."""
    means = cell_means(summary[summary["task"] == task], metric).set_index(["strategy", "k"])
    entries = means.reindex(rows)
    entries["status"] = entries["status"].fillna(MISSING)
    entries.loc[(entries["status"] == OK) & entries["underfit"].astype("boolean").fillna(False).astype(bool), "status"] = UNDERFIT
    return entries


def _table(summary: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> Table:
    """``columns`` maps a column name to its (task, metric)."""
    rows = _rows(summary)
    values = pd.DataFrame(index=rows)
    kept = summary[summary["metric"] == "task_score"].groupby(["strategy", "k"], sort=False)["layers_kept"].max()
    values["layers_kept"] = kept.reindex(rows).astype("Int64")
    marks = pd.DataFrame(index=rows)
    for name, (task, metric) in columns.items():
        entries = _entries(summary, task, metric, rows)
        values[name], marks[name] = entries["value"].astype(float), entries["status"]
    return Table(values, marks)


def _with_average(table: Table, name: str, columns: list[str]) -> None:
    """The mean of ``columns`` per row, missing (n/a) when any of them is."""
    table.values[name] = table.values[columns].mean(axis=1, skipna=False) if columns else float("nan")
    table.marks[name] = OK


def score_table(summary: pd.DataFrame, model: str, tasks: list[str] | None = None) -> Table:
    """The paper's view: each task's paper score, ``avg7`` (when all seven tasks are in the grid) and the
    GLUE-style ``average`` of the task scores. Rows (strategy, k) in summary order, baseline first."""
    rows = summary[summary["model"] == model]
    tasks = tasks or list(pd.unique(rows["task"]))
    table = _table(rows, {task: (task, "paper_score") for task in tasks})
    _with_average(table, AVG7, list(AVG7_TASKS) if set(AVG7_TASKS) <= set(tasks) else [])
    glue_style = _table(rows, {task: (task, "task_score") for task in tasks})
    table.values[AVERAGE] = glue_style.values[tasks].mean(axis=1, skipna=False)
    table.marks[AVERAGE] = OK
    return _flat(table)


def metric_columns(rows: pd.DataFrame, tasks: list[str]) -> dict[str, tuple[str, str]]:
    """Column name -> (task, metric) of every official metric in ``rows``."""
    official = rows[~rows["metric"].isin(["task_score", "paper_score"])]
    columns = {}
    for task in tasks:
        present = set(official.loc[official["task"] == task, "metric"])
        for metric in [m for m in metric_keys(task) if m in present]:
            columns[f"{task} {metric.removeprefix('validation_')}"] = (task, metric)
    return columns


def metrics_table(summary: pd.DataFrame, model: str, tasks: list[str]) -> Table:
    """Every official metric its own column, e.g. ``mrpc f1``, ``mrpc accuracy``, ``mnli matched_accuracy``."""
    rows = summary[summary["model"] == model]
    return _flat(_table(rows, metric_columns(rows, tasks)))


def _flat(table: Table) -> Table:
    return Table(table.values.reset_index(), table.marks.reset_index())


def significant_tests(stats: pd.DataFrame) -> pd.DataFrame:
    """The paired tests of results/stats.csv that are significant after Holm: the one reading of its
    ``significant`` column (bools, their text as written, or empty on the per-variant rows) that the tables'
    marks and the interval figure's filled markers share."""
    tests = stats[stats["comparison"].fillna("").ne("")]
    return tests[tests["significant"].map(lambda value: str(value).strip().lower() == "true").astype(bool)]


def significance_flags(table: Table, stats: pd.DataFrame, model: str, tests: Mapping[str, tuple[str, str]]) -> Table:
    """``table`` with a mark per score whose paired test (results/stats.csv) is significant after Holm:
    VS_FULL_MARK against the unpruned model, VS_STRATEGY_MARK against another strategy at the same k.
    ``tests`` maps a score column to its (task, metric in stats.csv); other columns get no mark."""
    flags = pd.DataFrame("", index=table.values.index, columns=score_columns(table.values))
    rows = significant_tests(stats)
    rows = rows[rows["model"] == model]
    variants = [(strategy, int(k)) for strategy, k in zip(table.values["strategy"], table.values["k"])]
    for column, (task, metric) in tests.items():
        tested = rows[(rows["task"] == task) & (rows["metric"] == metric)]
        vs_full = tested[tested["comparison"] == f"{BASELINE}-k0"]
        vs_other = tested[tested["comparison"] != f"{BASELINE}-k0"]
        full = set(zip(vs_full["strategy"], vs_full["k"].astype(int)))
        paired = set(zip(vs_other["strategy"], vs_other["k"].astype(int)))  # both sides of a pair are marked
        paired |= {(strategy, int(k)) for strategy, _, k in (c.rpartition("-k") for c in vs_other["comparison"])}
        flags[column] = [(VS_FULL_MARK if v in full else "") + (VS_STRATEGY_MARK if v in paired else "") for v in variants]
    return Table(table.values, table.marks, flags)


def score_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("strategy", "k", "layers_kept")]


def percent_of_full(table: Table, summary: pd.DataFrame, model: str) -> Table:
    """Each score as a percent of the unpruned model's (the baseline row). A column whose baseline is at
    chance gets no percent (mark ``chance``); ``avg7`` is the ratio of the averages unless one of its
    tasks is at chance; ``average`` the ratio of the task-score averages over the tasks whose baseline
    is above chance. All missing when the baseline is."""
    values, marks = table.values.copy(), table.marks.copy()
    tasks = [c for c in score_columns(values) if c not in (AVG7, AVERAGE)]
    base_rows = values["strategy"] == BASELINE
    rows = summary[(summary["model"] == model) & (summary["strategy"] == BASELINE)]
    chance = {task: bool(cell_means(rows[rows["task"] == task], "paper_score")["at_chance"].any()) for task in tasks}
    glue_chance = {task: bool(cell_means(rows[rows["task"] == task])["at_chance"].any()) for task in tasks}
    if not base_rows.any():
        values[score_columns(values)] = float("nan")
        return Table(values, marks)
    base = values[base_rows].iloc[0]
    for task in tasks:
        values[task] = 100 * values[task] / base[task]
        if chance[task]:
            values[task], marks[task] = float("nan"), "chance"
    if AVG7 in values:
        values[AVG7] = 100 * values[AVG7] / base[AVG7]
        if set(AVG7_TASKS) <= set(tasks) and any(chance[task] for task in AVG7_TASKS):
            values[AVG7], marks[AVG7] = float("nan"), "chance"
    above = [task for task in tasks if not glue_chance[task]]
    task_scores = _table(summary[summary["model"] == model], {task: (task, "task_score") for task in above}).values.reset_index()
    average = task_scores[above].mean(axis=1, skipna=False) if above else pd.Series(float("nan"), index=task_scores.index)
    values[AVERAGE] = 100 * average / average[base_rows.to_numpy()].iloc[0]
    return Table(values, marks)


def retained_long(summary: pd.DataFrame, model: str, tasks: list[str] | None = None) -> pd.DataFrame:
    """The tables' percent of the unpruned score (``percent_of_full`` of ``score_table``), the one definition
    the tables and the retained heatmap share, one row per pruned (strategy, k) and column (each task, ``avg7``
    when the grid has its seven tasks, ``average``): model, strategy, k, task, percent, status. ``status`` is
    the table's mark (ok, underfit, degenerate, missing, chance); a percent that is missing for another
    reason (a task of the average missing, no baseline) is ``missing``, except an average of tasks that are
    all at chance (``chance``)."""
    rows = summary[summary["model"] == model]
    tasks = tasks or list(pd.unique(rows["task"]))
    table = percent_of_full(score_table(summary, model, tasks), summary, model)
    columns = [*tasks, *([AVG7] if set(AVG7_TASKS) <= set(tasks) else []), AVERAGE]
    out = []
    for (_, values), (_, marks) in zip(table.values.iterrows(), table.marks.iterrows()):
        if values["strategy"] == BASELINE:
            continue
        for column in columns:
            percent, mark = values[column], marks[column]
            status = MISSING if pd.isna(percent) and mark in (OK, UNDERFIT) else mark
            if column in (AVG7, AVERAGE) and status == MISSING and all(marks[task] == "chance" for task in tasks):
                status = "chance"  # no task above chance to average: not a missing result
            out.append({"model": model, "strategy": values["strategy"], "k": int(values["k"]), "task": column,
                        "percent": float(percent) if pd.notna(percent) else float("nan"), "status": status})
    return pd.DataFrame(out, columns=["model", "strategy", "k", "task", "percent", "status"])


def chance_table(summary: pd.DataFrame, model: str, tasks: list[str]) -> pd.DataFrame:
    """Per task: the full model's paper score, its chance level from the dev labels and the margin (x 100)."""
    rows = summary[(summary["model"] == model) & (summary["strategy"] == BASELINE)]
    out = []
    for task in tasks:
        means = cell_means(rows[rows["task"] == task], "paper_score")
        if means.empty:
            continue
        entry = means.iloc[0]
        out.append({"task": task, "full model": 100 * entry["value"], "chance": 100 * entry["chance"],
                    "above chance": 100 * (entry["value"] - entry["chance"]),
                    "at chance": "yes" if entry["at_chance"] else "no"})
    return pd.DataFrame(out, columns=["task", "full model", "chance", "above chance", "at chance"])


def scaled(table: Table) -> Table:
    values = table.values.copy()
    values[score_columns(values)] = 100 * values[score_columns(values)]
    return Table(values, table.marks)


def footnotes(tables: list[Table], avg7_reason: str | None) -> list[str]:
    """Why a cell of these tables reads as it does."""
    marks = pd.concat([t.marks[score_columns(t.marks)] for t in tables], axis=1)
    notes = []
    if (marks == DEGENERATE).any().any():
        notes.append(f"{DEGENERATE_MARK} degenerate: the model predicts one value on a dev split (for at least one seed); "
                     "its undefined metrics (correlations) read 'degenerate'.")
    if (marks == UNDERFIT).any().any():
        notes.append(f"{UNDERFIT_MARK} underfit: for at least one seed the fine-tune's training loss (mean over its last "
                     f"epoch) stayed above {UNDERFIT_FIT:g} x the loss of the trivial predictor (label variance; entropy of "
                     "the class prior), so the score may say more about the head, budget or learning rate than about the "
                     "layers kept (per cell: train_fit, dev_fit and underfit in results/summary.csv).")
    if (marks == "chance").any().any():
        margins = ", ".join(f"{metric} +{margin:g}" for metric, margin in CHANCE_MARGINS.items())
        notes.append(f"{CHANCE_TEXT}: the full model scores at chance on this task (chance levels from the dev labels: "
                     f"majority-class rate, F1 of always predicting class 1, 0 for MCC and correlations; margins {margins}), "
                     "so a percent of it is meaningless; such tasks are left out of the percent averages.")
    if avg7_reason:
        notes.append(f"avg7 {NA_TEXT}: {avg7_reason}.")
    notes.append("avg7: the paper's mean paper score over SST-2, MNLI, QNLI, QQP, STS-B, RTE and MRPC; "
                 "average: the GLUE-style mean of the task scores (mean of each task's official metrics).")
    return notes


def scoring_footnotes(rows: pd.DataFrame) -> list[str]:
    """Notes on the [CLS] threshold rows (k decided by the threshold) and on strategies whose layers
    were scored on a dev split (``scoring.split: dev``), i.e. chosen on the evaluation data."""
    notes = []
    names = [s for s in pd.unique(rows["strategy"]) if cls_threshold_of(s) is not None]
    if names:
        notes.append(f"{', '.join(names)}: the paper's rule, dropping the layers whose [CLS] vector changes least "
                     "(cosine similarity before and after the layer above the threshold in thousandths, "
                     "cls_above_950: 0.95); k = 0 means k follows from the threshold, per task (layers kept: "
                     "the most over tasks; per cell in results/summary.csv).")
    on_dev = rows[~rows["scored_on"].astype("string").fillna("").isin(["", "train"])]
    if len(on_dev):
        notes.append(f"scored on dev: {', '.join(pd.unique(on_dev['strategy']))} chose the layers to drop on the dev "
                     "split it is evaluated on (scoring.split: dev, as in the paper), which leaks the evaluation data.")
    return notes


def _display(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"layers_kept": "layers kept"})


def _markdown(table: pd.DataFrame) -> str:
    align = ["left"] + ["right"] * (len(table.columns) - 1)
    return _display(table).to_markdown(index=False, disable_numparse=True, colalign=align)


def _cell_text(value, mark: str) -> str:
    if mark == "chance":
        return CHANCE_TEXT
    if mark == MISSING:
        return MISSING_TEXT
    if pd.isna(value):
        return DEGENERATE if mark == DEGENERATE else NA_TEXT
    return f"{value:.1f}" + {DEGENERATE: DEGENERATE_MARK, UNDERFIT: UNDERFIT_MARK}.get(mark, "")


def _as_text(table: Table) -> pd.DataFrame:
    """Scores with one decimal, 'missing', 'degenerate' or 'n/a' for gaps (tabulate prints NaN as 'nan'),
    followed by their significance marks."""
    out = table.values.astype(object)
    for column in table.values.columns:
        if column in score_columns(table.values):
            flags = table.flags[column] if table.flags is not None and column in table.flags else [""] * len(out)
            out[column] = [_cell_text(v, m) + f for v, m, f in zip(table.values[column], table.marks[column], flags)]
        else:
            out[column] = [MISSING_TEXT if pd.isna(v) else str(v) for v in table.values[column]]
    return out


def _chance_text(table: pd.DataFrame) -> pd.DataFrame:
    out = table.astype(object)
    for column in ("full model", "chance", "above chance"):
        out[column] = [NA_TEXT if pd.isna(v) else f"{v:.1f}" for v in table[column]]
    return out


TITLES = {
    "scores": "Dev score x 100 (paper score per task)",
    "metrics": "Every official metric x 100",
    "percent": "Percent of the full model (paper score)",
    "chance": "Full model against chance (paper score x 100)",
    "retried": "Diverged runs re-run with another seed",
    "fit": "Training fit: loss / trivial predictor's loss, train (last epoch) and dev; underfit seeds",
}


def _texts(tables: Mapping[str, Table], chance: pd.DataFrame, extra: Mapping[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """The tables as text; ``extra``: tables already text (slug -> frame), e.g. ``fit`` and ``retried``."""
    texts = {**{slug: _display(_as_text(table)) for slug, table in tables.items()}, "chance": _chance_text(chance)}
    return {**texts, **(extra or {})}


def model_tables_markdown(model: str, note: str, tables: Mapping[str, Table], chance: pd.DataFrame,
                          notes: list[str], missing: tuple[int, int], extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    lines = [f"## {model}", ""]
    if note:
        lines += [f"*{note}*", ""]
    lines += [missing_sentence(*missing), ""]
    for slug, text in _texts(tables, chance, extra).items():
        lines += [f"### {TITLES[slug]}", "", _markdown(text), ""]
    lines += [f"- {line}" for line in notes] + [""]
    return "\n".join(lines)


def model_tables_latex(model: str, note: str, tables: Mapping[str, Table], chance: pd.DataFrame,
                       notes: list[str], missing: tuple[int, int], extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    parts = []
    for slug, text in _texts(tables, chance, extra).items():
        caption = f"{_latex_escape(model)}: {_latex_escape(TITLES[slug])}. {_latex_escape(missing_sentence(*missing))}"
        if note:
            caption += f" {_latex_escape(note)}."
        caption += "".join(f" {_latex_escape(line)}" for line in notes)
        parts.append(text.to_latex(index=False, caption=caption, label=f"tab:dropbench-{_label_safe(model)}-{slug}", escape=True))
    return "\n".join(parts)


def model_tables_html(model: str, note: str, tables: Mapping[str, Table], chance: pd.DataFrame,
                      notes: list[str], missing: tuple[int, int], extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    body = [f"<h2>{html.escape(model)}</h2>"]
    if note:
        body.append(f"<p class='note'>{html.escape(note)}</p>")
    body.append(f"<p>{html.escape(missing_sentence(*missing))}</p>")
    for slug, text in _texts(tables, chance, extra).items():
        body += [f"<h3>{html.escape(TITLES[slug])}</h3>", _html_table(text)]
    body += [f"<p class='note'>{html.escape(line)}</p>" for line in notes]
    return _html_page(f"dropbench: {model}", body)


def missing_sentence(missing: int, expected: int) -> str:
    if not missing:
        return f"Missing cells: none (all {expected} have results)."
    return f"Missing cells: {missing} of {expected} (shown as '{MISSING_TEXT}', never as zero)."


def missing_html(missing: pd.DataFrame, expected: int) -> str:
    failed = int((missing["status"] == FAILED).sum())
    heading = f"{len(missing)} of {expected} cells missing" + (f" ({failed} failed)" if failed else "")
    body = [f"<h2>{html.escape(heading)}</h2>"]
    if len(missing):
        body.append(_html_table(missing))
    else:
        body.append("<p>Every cell of the grid has a result.</p>")
    return _html_page("dropbench: missing cells", body)


def _html_table(table: pd.DataFrame) -> str:
    text = table.to_html(index=False, na_rep=MISSING_TEXT, float_format=lambda v: f"{v:.1f}", border=0)
    return text.replace(f"<td>{MISSING_TEXT}</td>", f"<td class='missing'>{MISSING_TEXT}</td>")


def _html_page(title: str, body: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}"
        "th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}th{background:#f3f3f3}"
        "td.missing{color:#999;font-style:italic;background:repeating-linear-gradient(45deg,#fff,#fff 4px,#eee 4px,#eee 8px)}"
        ".note{font-style:italic}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _latex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(replacements.get(char, char) for char in text)


def _label_safe(text: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in text)


def _parent_made(path: str | Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path)


def _write(path: str | Path, text: str) -> None:
    _parent_made(path).write_text(text)


def aggregate(
    metrics_paths: Iterable[str | Path],
    summary_csv: str | Path,
    seeds_csv: str | Path,
    missing_csv: str | Path,
    missing_report: str | Path,
    expected: Iterable[Mapping] | None = None,
    failed_dir: str | Path | None = None,
    order: Mapping[str, list] | None = None,
    paper_score_metrics: Mapping[str, str] | None = None,
    latency_paths: Iterable[str | Path] = (),
    retry_paths: Iterable[str | Path] = (),
) -> pd.DataFrame:
    """Write the tidy summary, the statistics per seed group and the missing cells (the per-model tables
    come after the paired tests: ``tables``). ``retry_paths``: the lists of ``dropbench.report.retries``."""
    from dropbench.report.retries import read_retries

    summary = load_summary(metrics_paths, expected, read_failed(failed_dir), order, paper_score_metrics, latency_paths,
                           read_retries(retry_paths))
    summary.to_csv(_parent_made(summary_csv), index=False)
    seed_statistics(summary).to_csv(_parent_made(seeds_csv), index=False)
    missing = missing_cells(summary)
    missing.to_csv(_parent_made(missing_csv), index=False)
    _write(missing_report, missing_html(missing, missing_count(summary)[1]))
    n_missing, n_expected = missing_count(summary)
    log.info("%d of %d cells have results, %d rows -> %s", n_expected - n_missing, n_expected, len(summary), summary_csv)
    return summary


def read_summary(path: str | Path) -> pd.DataFrame:
    """results/summary.csv with the column types ``load_summary`` gives them (columns it lacks, empty)."""
    summary = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"status": str, "reason": str, "dropped_layers": str})
    summary = summary.reindex(columns=SUMMARY_COLUMNS)
    summary = summary.astype({column: "Float64" for column in INT_COLUMNS}).astype({column: "Int64" for column in INT_COLUMNS})
    return summary.astype({"train_subsampled": "boolean", "at_chance": "boolean", "underfit": "boolean"})


def model_note(note: str, rows: pd.DataFrame) -> str:
    """The config's note on a model, the classifier head(s) and learning rate(s) its cells were fine-tuned
    with (cells from before records carried a learning rate show none)."""
    used = sorted(set(rows["head"].dropna())) if "head" in rows else []
    head = f"classifier head: {', '.join(used)}" if used else ""
    rates = sorted(set(rows["learning_rate"].dropna())) if "learning_rate" in rows else []
    rate = f"learning rate {', '.join(f'{r:g}' for r in rates)}" if rates else ""
    return "; ".join(part for part in (note, head, rate) if part)


def fit_table(rows: pd.DataFrame, tasks: list[str]) -> pd.DataFrame | None:
    """Per (strategy, k) row and task: mean train fit / mean dev fit over seeds, and how many seeds are
    underfit (dropbench.train.convergence); None when no cell recorded its fit."""
    scores = rows[(rows["metric"] == "task_score") & (rows["status"] != RETRIED)]
    if "train_fit" not in scores or scores["train_fit"].isna().all():
        return None
    index = _rows(scores)
    table = pd.DataFrame(index=index)
    for task in tasks:
        grouped = scores[scores["task"] == task].groupby(["strategy", "k"], sort=False)
        stats = grouped.agg(train=("train_fit", "mean"), dev=("dev_fit", "mean"),
                            underfit=("underfit", lambda flags: int(flags.astype("boolean").fillna(False).sum())),
                            seeds=("train_fit", "count")).reindex(index)
        table[task] = [MISSING_TEXT if pd.isna(row.train) else
                       f"{row.train:.2f} / {row.dev:.2f}" + (f" ({int(row.underfit)} of {int(row.seeds)} underfit)" if row.underfit else "")
                       for row in stats.itertuples()]
    return table.reset_index()


def retried_counts(summary: pd.DataFrame, model: str, tasks: list[str]) -> pd.DataFrame:
    """Per (strategy, k) row and task: how many diverged runs were replaced by a retry."""
    rows = summary[(summary["model"] == model) & (summary["metric"] == "task_score")]
    counts = rows[rows["status"] == RETRIED].groupby(["strategy", "k", "task"]).size()
    index = _rows(rows[rows["status"] != RETRIED])
    table = pd.DataFrame(index=index)
    for task in tasks:
        table[task] = [int(counts.get((strategy, k, task), 0)) for strategy, k in index]
    return table.reset_index().astype({task: str for task in tasks})


def significance_note(alpha: float, resamples: int) -> str:
    return (f"{VS_FULL_MARK}: differs from the unpruned model; {VS_STRATEGY_MARK}: differs from another strategy at the same k "
            "(results/stats.csv says which): paired permutation test on the same dev examples, pooled over seeds, "
            f"{resamples} resamples, Holm-adjusted over all tests of the metric in the grid, p_adjusted < {alpha:g}. "
            "avg7 and average are not tested.")


def retry_note(retry_diverged: int) -> str:
    return (f"Re-run after diverging (retry_diverged: {retry_diverged}): a fine-tune at chance while another seed of its "
            "cell or the unpruned model is clearly above is re-run with seed + 1000 x attempt; both runs stay in "
            "results/summary.csv (the diverged one with status 'retried', its retry with retry_of), and only the retry "
            "counts in the means, intervals and tests.")


def write_model_tables(
    summary: pd.DataFrame,
    model_tables: Mapping[str, Mapping[str, str]],
    stats: pd.DataFrame | None = None,
    notes: Mapping[str, str] | None = None,
    order: Mapping[str, list] | None = None,
    paper_score_metrics: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    resamples: int = 2000,
    retry_diverged: int = 0,
) -> None:
    """Per model, its tables as ``md``, ``tex`` and ``html`` (``model_tables``: model -> {format: path}).
    ``stats`` (results/stats.csv) marks the significant scores; ``retry_diverged`` > 0 adds the count
    of re-run diverged runs."""
    tasks = list((order or {}).get("tasks") or pd.unique(summary["task"]))
    for model, paths in model_tables.items():
        rows = summary[summary["model"] == model]
        model_tasks = [t for t in tasks if t in set(rows["task"])]
        table = score_table(rows, model, model_tasks)
        tables = {"scores": scaled(table), "metrics": scaled(metrics_table(rows, model, model_tasks)),
                  "percent": percent_of_full(table, rows, model)}
        avg7_reason = avg7_problem({task: 0.0 for task in model_tasks})
        lines = footnotes(list(tables.values()), avg7_reason) + scoring_footnotes(rows)
        if stats is not None:
            chosen = paper_metrics(model_tasks, {t: m for t, m in (paper_score_metrics or {}).items() if t in model_tasks})
            paper = {task: (task, "task_score" if metric == MEAN else metric) for task, metric in chosen.items()}
            tests = {"scores": paper, "percent": paper, "metrics": metric_columns(rows, model_tasks)}
            tables = {slug: significance_flags(t, stats, model, tests[slug]) for slug, t in tables.items()}
            lines.append(significance_note(alpha, resamples))
        extra = {}
        fit = fit_table(rows, model_tasks)
        if fit is not None:
            extra["fit"] = fit
        if retry_diverged:
            extra["retried"] = retried_counts(summary, model, model_tasks)
            lines.append(retry_note(retry_diverged))
        note = model_note((notes or {}).get(model, ""), rows)
        args = (model, note, tables, chance_table(rows, model, model_tasks), lines, missing_count(rows))
        _write(paths["md"], model_tables_markdown(*args, extra))
        _write(paths["tex"], model_tables_latex(*args, extra))
        _write(paths["html"], model_tables_html(*args, extra))


def tables(summary_csv, stats_csv, model_tables, notes=None, order=None, paper_score_metrics=None,
           alpha: float = 0.05, resamples: int = 2000, retry_diverged: int = 0) -> None:
    """The per-model tables from results/summary.csv, marked from results/stats.csv (rule ``tables``)."""
    stats = pd.read_csv(stats_csv, keep_default_na=False, na_values=[""])
    write_model_tables(read_summary(summary_csv), model_tables, stats, notes, order, paper_score_metrics, alpha, resamples, retry_diverged)
