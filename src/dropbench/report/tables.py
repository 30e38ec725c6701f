"""The paper-style tables of one model (rule ``tables``): scores, every metric, percent of the full model, the
full model against chance, training fit and retries, marked from results/stats.csv, written as Markdown, LaTeX and
HTML (dropbench.report.render). Reads the tidy summary of dropbench.report.aggregate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from dropbench.evaluate.chance import CHANCE_MARGINS
from dropbench.plan.cells import BASELINE
from dropbench.train.convergence import UNDERFIT_FIT
from dropbench.report.aggregate import (AVERAGE, AVG7, CHANCE_TEXT, DEGENERATE, DEGENERATE_MARK, MISSING, MISSING_TEXT,
                                        NA_TEXT, OK, RETRIED, UNDERFIT, UNDERFIT_MARK, VS_FULL_MARK, VS_STRATEGY_MARK,
                                        cell_means, missing_count, read_summary, write_text)
from dropbench.prune.strategy_names import cls_threshold_of
from dropbench.report.paper_score import AVG7_TASKS, MEAN, avg7_problem, metric_keys, paper_metrics
from dropbench.report.render import model_tables_html, model_tables_latex, model_tables_markdown, score_columns


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
        write_text(paths["md"], model_tables_markdown(*args, extra))
        write_text(paths["tex"], model_tables_latex(*args, extra))
        write_text(paths["html"], model_tables_html(*args, extra))


def tables(summary_csv, stats_csv, model_tables, notes=None, order=None, paper_score_metrics=None,
           alpha: float = 0.05, resamples: int = 2000, retry_diverged: int = 0) -> None:
    """The per-model tables from results/summary.csv, marked from results/stats.csv (rule ``tables``)."""
    stats = pd.read_csv(stats_csv, keep_default_na=False, na_values=[""])
    write_model_tables(read_summary(summary_csv), model_tables, stats, notes, order, paper_score_metrics, alpha, resamples, retry_diverged)
