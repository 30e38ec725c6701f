"""All cells into one tidy table and the cells still missing (rule ``aggregate``); the paper-style tables per model
are dropbench.report.tables (rule ``tables``).

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
from pathlib import Path

import pandas as pd

from dropbench.evaluate.chance import at_chance
from dropbench.plan.cells import BASELINE, CELL_KEYS, Cell
from dropbench.report.paper_score import paper_metrics, paper_score
from dropbench.plan.records import CorruptResultError, read_cell_metrics
from dropbench.prune.strategy_names import cls_threshold_of

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


def cell_key(cell: Mapping) -> Cell:
    """The Cell a record or an expected cell names (its k and seed may be read as floats or numpy integers)."""
    return Cell(cell["model"], cell["strategy"], int(cell["k"]), cell["task"], int(cell["seed"]))


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


def read_failed(failed_dir: str | Path | None) -> dict[Cell, str]:
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
    failed: Mapping[Cell, str] | None = None,
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
        key = cell_key(cell)
        if key not in seen:
            rows += missing_rows(cell, failed.get(key))
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


def missing_sentence(missing: int, expected: int) -> str:
    if not missing:
        return f"Missing cells: none (all {expected} have results)."
    return f"Missing cells: {missing} of {expected} (shown as '{MISSING_TEXT}', never as zero)."


def missing_html(missing: pd.DataFrame, expected: int) -> str:
    failed = int((missing["status"] == FAILED).sum())
    heading = f"{len(missing)} of {expected} cells missing" + (f" ({failed} failed)" if failed else "")
    body = [f"<h2>{html.escape(heading)}</h2>"]
    if len(missing):
        body.append(html_table(missing))
    else:
        body.append("<p>Every cell of the grid has a result.</p>")
    return html_page("dropbench: missing cells", body)


def html_table(table: pd.DataFrame) -> str:
    text = table.to_html(index=False, na_rep=MISSING_TEXT, float_format=lambda v: f"{v:.1f}", border=0)
    return text.replace(f"<td>{MISSING_TEXT}</td>", f"<td class='missing'>{MISSING_TEXT}</td>")


def html_page(title: str, body: list[str]) -> str:
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


def _parent_made(path: str | Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path)


def write_text(path: str | Path, text: str) -> None:
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
    write_text(missing_report, missing_html(missing, missing_count(summary)[1]))
    n_missing, n_expected = missing_count(summary)
    log.info("%d of %d cells have results, %d rows -> %s", n_expected - n_missing, n_expected, len(summary), summary_csv)
    return summary


def read_summary(path: str | Path) -> pd.DataFrame:
    """results/summary.csv with the column types ``load_summary`` gives them (columns it lacks, empty)."""
    summary = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"status": str, "reason": str, "dropped_layers": str})
    summary = summary.reindex(columns=SUMMARY_COLUMNS)
    summary = summary.astype({column: "Float64" for column in INT_COLUMNS}).astype({column: "Int64" for column in INT_COLUMNS})
    return summary.astype({"train_subsampled": "boolean", "at_chance": "boolean", "underfit": "boolean"})


