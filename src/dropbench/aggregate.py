"""All cells into one tidy table, the cells still missing, and the paper-style tables per model.

A cell of the expected grid without a metrics file is kept as one ``task_score`` row with no value
and status ``missing`` (or ``failed`` when ``results/failed`` has a record for it), so that tables
and figures show a gap, never a zero.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dropbench.grid import BASELINE
from dropbench.records import read_cell_metrics

log = logging.getLogger(__name__)

CELL_COLUMNS = ["model", "strategy", "k", "task", "seed"]
OK, MISSING, FAILED = "ok", "missing", "failed"
SUMMARY_COLUMNS = [
    *CELL_COLUMNS[:3], "layers_kept", *CELL_COLUMNS[3:], "status", "metric", "value",
    "parameters", "latency_ms", "throughput", "num_layers_pretrained", "dropped_layers",
    "train_rows", "train_rows_available", "train_subsampled", "train_seconds", "reason",
]
INT_COLUMNS = ["layers_kept", "parameters", "num_layers_pretrained", "train_rows", "train_rows_available"]
AVERAGE = "average"
MISSING_TEXT = "missing"


def cell_key(cell: Mapping) -> tuple:
    return tuple(cell[key] if key not in ("k", "seed") else int(cell[key]) for key in CELL_COLUMNS)


def tidy_rows(record: dict) -> list[dict]:
    """One row per (cell, metric); ``task_score`` is one of the metrics."""
    shared = {
        **{key: record[key] for key in CELL_COLUMNS},
        "status": OK,
        "num_layers_pretrained": record["num_layers_pretrained"],
        "layers_kept": record["num_layers"],
        "dropped_layers": " ".join(map(str, record["dropped_layers"])),
        "parameters": record["parameters"],
        "latency_ms": record["inference"]["latency_ms"],
        "throughput": record["inference"]["throughput_examples_per_s"],
        "train_rows": record["train_rows"],
        "train_rows_available": record["train_rows_available"],
        "train_subsampled": record["train_rows"] < record["train_rows_available"],
        "train_seconds": record["train_seconds"],
        "reason": "",
    }
    metrics = {**record["metrics"], "task_score": record["task_score"]}
    return [{**shared, "metric": name, "value": value} for name, value in metrics.items()]


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
    parts = path.relative_to(failed_dir).with_suffix("").parts
    if len(parts) != 4 or "-k" not in parts[1] or not parts[3].startswith("seed"):
        return None
    strategy, _, k = parts[1].rpartition("-k")
    seed = parts[3].removeprefix("seed")
    if not (k.isdigit() and seed.isdigit()):
        return None
    return {"model": parts[0], "strategy": strategy, "k": int(k), "task": parts[2], "seed": int(seed)}


def missing_row(cell: Mapping, reason: str | None) -> dict:
    return {
        **{key: cell[key] for key in CELL_COLUMNS},
        "status": MISSING if reason is None else FAILED,
        "metric": "task_score",
        "value": float("nan"),
        "reason": reason or "",
    }


def load_summary(
    metrics_paths: Iterable[str | Path],
    expected: Iterable[Mapping] | None = None,
    failed: Mapping[tuple, str] | None = None,
    order: Mapping[str, list] | None = None,
) -> pd.DataFrame:
    """The tidy table: every metrics file, plus one row per expected cell that has none.

    ``order`` may give the config's order of ``models``, ``strategies`` and ``tasks`` for the rows
    (the baseline always comes first); anything not named sorts after, alphabetically.
    """
    rows, seen = [], set()
    for path in metrics_paths:
        record = read_cell_metrics(path)
        seen.add(cell_key(record))
        rows += tidy_rows(record)
    failed = failed or {}
    for cell in expected or []:
        if cell_key(cell) not in seen:
            rows.append(missing_row(cell, failed.get(cell_key(cell))))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({column: "Float64" for column in INT_COLUMNS})
    # A missing cell still knows its depth when another cell of its model has a result.
    depth = summary["model"].map(summary.groupby("model")["num_layers_pretrained"].max())
    summary["num_layers_pretrained"] = summary["num_layers_pretrained"].fillna(depth)
    summary["layers_kept"] = summary["layers_kept"].fillna(summary["num_layers_pretrained"] - summary["k"])
    summary["train_subsampled"] = summary["train_subsampled"].astype("boolean")
    summary = summary.astype({column: "Int64" for column in INT_COLUMNS})
    return sort_cells(summary, order)


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
    return scores.loc[scores["status"] != OK, [*CELL_COLUMNS, "status", "reason"]].reset_index(drop=True)


def missing_count(summary: pd.DataFrame) -> tuple[int, int]:
    """(cells without a result, cells expected)."""
    scores = summary[summary["metric"] == "task_score"]
    return int((scores["status"] != OK).sum()), len(scores)


def cell_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Task score, parameters and latency per (model, strategy, k, task), the mean over seeds.

    The score is missing unless every seed of the entry has one (a partial mean would pass for a result).
    """
    scores = summary[summary["metric"] == "task_score"]
    grouped = scores.groupby(["model", "strategy", "k", "task"], sort=False, dropna=False)
    means = grouped.agg(
        value=("value", "mean"),
        complete=("status", lambda status: bool((status == OK).all())),
        seeds=("seed", "nunique"),
        layers_kept=("layers_kept", "max"),
        parameters=("parameters", "mean"),
        latency_ms=("latency_ms", "mean"),
    ).reset_index()
    means.loc[~means["complete"], "value"] = float("nan")
    return means


def seed_statistics(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per (model, strategy, k, task, metric), over the
    cells that have a result (``seeds`` says how many did)."""
    done = summary[summary["status"] == OK]
    grouped = done.groupby(["model", "strategy", "k", "layers_kept", "task", "metric"], sort=False)
    return grouped["value"].agg(mean="mean", std="std", seeds="count").reset_index()


def score_table(summary: pd.DataFrame, model: str, tasks: list[str] | None = None) -> pd.DataFrame:
    """Rows (strategy, k) in summary order, baseline first; columns layers_kept, the tasks and
    their average (0-1 scale; the average is missing when any task is)."""
    means = cell_means(summary[summary["model"] == model])
    tasks = tasks or list(pd.unique(means["task"]))
    rows = list(dict.fromkeys(zip(means["strategy"], means["k"])))
    table = means.set_index(["strategy", "k", "task"])["value"].unstack("task")
    table = table.reindex(index=pd.MultiIndex.from_tuples(rows, names=["strategy", "k"]), columns=tasks)
    table.columns.name = None
    table[AVERAGE] = table[tasks].mean(axis=1, skipna=False)
    kept = means.groupby(["strategy", "k"], sort=False)["layers_kept"].max()
    table.insert(0, "layers_kept", kept.reindex(table.index).astype("Int64"))
    return table.reset_index()


def score_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("strategy", "k", "layers_kept")]


def percent_of_full(table: pd.DataFrame) -> pd.DataFrame:
    """Each score as a percent of the unpruned model's (the baseline row); the average column is the
    ratio of the averages. All missing when the baseline is."""
    columns = score_columns(table)
    out = table.copy()
    base = table[table["strategy"] == BASELINE]
    if base.empty:
        out[columns] = float("nan")
    else:
        out[columns] = 100 * table[columns] / base[columns].iloc[0]
    return out


def scaled(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out[score_columns(table)] = 100 * table[score_columns(table)]
    return out


def _display(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"layers_kept": "layers kept"})


def _markdown(table: pd.DataFrame) -> str:
    align = ["left"] + ["right"] * (len(table.columns) - 1)
    return _display(_as_text(table)).to_markdown(index=False, disable_numparse=True, colalign=align)


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Scores with one decimal and the word 'missing' for gaps (tabulate prints NaN as 'nan')."""
    out = table.astype(object)
    for column in table.columns:
        if column in score_columns(table):
            out[column] = [MISSING_TEXT if pd.isna(v) else f"{v:.1f}" for v in table[column]]
        else:
            out[column] = [MISSING_TEXT if pd.isna(v) else str(v) for v in table[column]]
    return out


def model_tables_markdown(model: str, note: str, absolute: pd.DataFrame, percent: pd.DataFrame, missing: tuple[int, int]) -> str:
    lines = [f"## {model}", ""]
    if note:
        lines += [f"*{note}*", ""]
    lines += [missing_sentence(*missing), ""]
    for title, table in (("Dev score x 100", absolute), ("Percent of the full model", percent)):
        lines += [f"### {title}", "", _markdown(table), ""]
    return "\n".join(lines)


def model_tables_latex(model: str, note: str, absolute: pd.DataFrame, percent: pd.DataFrame, missing: tuple[int, int]) -> str:
    parts = []
    for title, slug, table in (("Dev score $\\times$ 100", "scores", absolute), ("Percent of the full model", "percent", percent)):
        caption = f"{_latex_escape(model)}: {title}. {_latex_escape(missing_sentence(*missing))}"
        if note:
            caption += f" {_latex_escape(note)}."
        parts.append(
            _display(table).to_latex(
                index=False, na_rep=MISSING_TEXT, float_format="%.1f", caption=caption,
                label=f"tab:dropbench-{_label_safe(model)}-{slug}", escape=True,
            )
        )
    return "\n".join(parts)


def model_tables_html(model: str, note: str, absolute: pd.DataFrame, percent: pd.DataFrame, missing: tuple[int, int]) -> str:
    body = [f"<h2>{html.escape(model)}</h2>"]
    if note:
        body.append(f"<p class='note'>{html.escape(note)}</p>")
    body.append(f"<p>{html.escape(missing_sentence(*missing))}</p>")
    for title, table in (("Dev score &times; 100", absolute), ("Percent of the full model", percent)):
        body += [f"<h3>{title}</h3>", _html_table(_display(_as_text(table)))]
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
    model_tables: Mapping[str, Mapping[str, str]],
    expected: Iterable[Mapping] | None = None,
    failed_dir: str | Path | None = None,
    notes: Mapping[str, str] | None = None,
    order: Mapping[str, list] | None = None,
) -> pd.DataFrame:
    """Write the tidy summary, the missing cells and, per model, its tables as ``md``, ``tex`` and ``html``.

    ``model_tables`` maps each model to ``{"md": path, "tex": path, "html": path}``.
    """
    summary = load_summary(metrics_paths, expected, read_failed(failed_dir), order)
    summary.to_csv(_parent_made(summary_csv), index=False)
    seed_statistics(summary).to_csv(_parent_made(seeds_csv), index=False)
    missing = missing_cells(summary)
    missing.to_csv(_parent_made(missing_csv), index=False)
    _write(missing_report, missing_html(missing, missing_count(summary)[1]))

    tasks = list((order or {}).get("tasks") or pd.unique(summary["task"]))
    for model, paths in model_tables.items():
        rows = summary[summary["model"] == model]
        table = score_table(rows, model, [t for t in tasks if t in set(rows["task"])])
        absolute, percent = scaled(table), percent_of_full(table)
        args = (model, (notes or {}).get(model, ""), absolute, percent, missing_count(rows))
        _write(paths["md"], model_tables_markdown(*args))
        _write(paths["tex"], model_tables_latex(*args))
        _write(paths["html"], model_tables_html(*args))
    n_missing, n_expected = missing_count(summary)
    log.info("%d of %d cells have results, %d rows -> %s", n_expected - n_missing, n_expected, len(summary), summary_csv)
    return summary
