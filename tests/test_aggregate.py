"""Tidy summary, missing cells and paper-style tables from synthetic metrics records (no Snakemake)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from dropbench.report import aggregate
from dropbench.report import tables as report_tables
from dropbench.evaluate.chance import base_metric
from dropbench.report.paper_score import metric_keys
from dropbench.report.aggregate import load_summary
from dropbench.report.tables import percent_of_full, score_table


CHANCE = {"accuracy": 0.5, "f1": 0.6, "matthews_correlation": 0.0, "pearson": 0.0, "spearmanr": 0.0}


def metrics_record(model="tiny", strategy="none", k=0, task="sst2", seed=1, score=0.8, layers=4, latency_ms=2.0,
                   metrics=None, status="ok"):  # latency_ms: only for write_grid's latency files
    """A valid metrics record (dropbench/schemas/metrics.schema.yaml) for one cell; every official metric
    of the task is ``score`` unless ``metrics`` says otherwise."""
    metrics = metrics or {name: score for name in metric_keys(task)}
    values = list(metrics.values())
    return {
        "model": model, "strategy": strategy, "k": k, "task": task, "seed": seed, "status": status,
        "task_score": None if None in values else sum(values) / len(values), "metrics": metrics,
        "chance": {name: CHANCE[base_metric(name)] for name in metrics},
        "distinct_predictions": {"validation": 1 if status == "degenerate" else 2}, "primary_metric": "accuracy",
        "dropped_layers": list(range(layers - k, layers)), "kept_layers": list(range(layers - k)),
        "num_layers_pretrained": layers, "num_layers": layers - k, "parameters": 1000 * (layers - k + 1),
        "train_rows": 32, "train_rows_available": 100, "dev_rows": {"dev": 32},
        "train_seconds": 1.0, "train_device": "cpu", "eval_seconds": 0.1,
    }


def latency_result(model, strategy, k, layers=4, latency_ms=2.0, scope="any"):
    """What ``measure_latency`` writes for one architecture: the time scales with the kept layers."""
    return {"architecture": {"model": model, "strategy": strategy, "k": k, "scope": scope},
            "protocol": {"batch_size": 4}, "latency_ms": latency_ms * (layers - k) / layers,
            "latency_ms_median": latency_ms * (layers - k) / layers, "throughput_examples_per_s": 100.0,
            "parameters": 1000 * (layers - k)}


def write_grid(root, cells, skip=(), score=lambda cell: 0.9 - 0.1 * cell["k"], **record_args):
    """Write a metrics file for every cell not in ``skip``; return (paths, expected cells)."""
    paths = []
    for cell in cells:
        if any(all(cell[key] == value for key, value in partial.items()) for partial in skip):
            continue
        path = root / f"{cell['model']}-{cell['strategy']}-k{cell['k']}-{cell['task']}-seed{cell['seed']}.json"
        args = record_args.get(cell["model"], {})
        path.write_text(json.dumps(metrics_record(**cell, score=score(cell), **args)))
        paths.append(path)
        latency = latency_result(cell["model"], cell["strategy"], cell["k"], **args)
        latency_path = root / "latency" / cell["model"] / f"{cell['strategy']}-k{cell['k']}" / "any.json"  # as the workflow names it
        latency_path.parent.mkdir(parents=True, exist_ok=True)
        latency_path.write_text(json.dumps(latency))
    return paths, cells


def grid(model="tiny", strategies=("top", "bottom"), ks=(2,), tasks=("sst2", "stsb"), seeds=(1,)):
    variants = [("none", 0)] + [(s, k) for s in strategies for k in ks]
    return [dict(model=model, strategy=s, k=k, task=t, seed=seed) for s, k in variants for t in tasks for seed in seeds]


def table_paths(tmp_path, *models):
    return {model: {fmt: str(tmp_path / "tables" / f"{model}.{fmt}") for fmt in ("md", "tex", "html")} for model in models}


def run_aggregate(tmp_path, paths, expected, models=("tiny",), notes=None, **kwargs):
    """The aggregate rule's outputs, then the tables rule's (without stats.csv: no significance marks)."""
    summary = aggregate.aggregate(
        paths, tmp_path / "summary.csv", tmp_path / "seeds.csv", tmp_path / "missing.csv", tmp_path / "missing.html",
        expected=expected, **kwargs,
    )
    report_tables.write_model_tables(summary, table_paths(tmp_path, *models), notes=notes, order=kwargs.get("order"),
                                 paper_score_metrics=kwargs.get("paper_score_metrics"))
    return summary


def test_a_cell_without_metrics_is_a_missing_row_not_a_zero(tmp_path):
    paths, expected = write_grid(tmp_path, grid(), skip=[{"strategy": "bottom", "task": "stsb"}])
    summary = run_aggregate(tmp_path, paths, expected)
    scores = summary[summary["metric"] == "task_score"]
    assert len(scores) == len(expected) == 6
    gap = scores[scores["status"] != "ok"]
    assert gap[["strategy", "task", "status"]].values.tolist() == [["bottom", "stsb", "missing"]]
    assert math.isnan(gap["value"].iloc[0])
    assert gap["layers_kept"].iloc[0] == 2  # known from the model's other cells
    written = pd.read_csv(tmp_path / "summary.csv")
    assert written["value"].isna().sum() == 2 and (written["value"] != 0).all()  # its task_score and paper_score
    assert pd.read_csv(tmp_path / "missing.csv")[["strategy", "k", "task"]].values.tolist() == [["bottom", 2, "stsb"]]
    assert "1 of 6 cells missing" in (tmp_path / "missing.html").read_text()


def test_tables_show_missing_and_count_it(tmp_path):
    paths, expected = write_grid(tmp_path, grid(), skip=[{"strategy": "bottom", "task": "stsb"}])
    run_aggregate(tmp_path, paths, expected)
    md = (tmp_path / "tables" / "tiny.md").read_text()
    bottom = [line for line in md.splitlines() if line.startswith("| bottom")]
    assert len(bottom) == 3  # paper-score, every-metric and percent tables
    assert all("missing" in line and " 0.0 " not in line and "nan" not in line for line in bottom)
    assert "Missing cells: 1 of 6" in md
    tex = (tmp_path / "tables" / "tiny.tex").read_text()
    assert tex.count(r"\begin{table}") == 4 and "bottom & 2 & 2 & 70.0 & missing & n/a & n/a" in tex
    html = (tmp_path / "tables" / "tiny.html").read_text()
    # stsb in the paper-score and percent tables, stsb pearson and spearmanr in the every-metric table
    assert html.count("<td class='missing'>missing</td>") == 4


def test_complete_grid_has_no_missing(tmp_path):
    paths, expected = write_grid(tmp_path, grid())
    summary = run_aggregate(tmp_path, paths, expected)
    assert (summary["status"] == "ok").all()
    assert pd.read_csv(tmp_path / "missing.csv").empty
    assert "Missing cells: none (all 6 have results)" in (tmp_path / "tables" / "tiny.md").read_text()


def test_failed_cells_are_read_by_keys_or_by_path(tmp_path):
    paths, expected = write_grid(tmp_path, grid(), skip=[{"strategy": "bottom"}, {"strategy": "top", "task": "stsb"}])
    failed = tmp_path / "failed"
    (failed / "tiny" / "bottom-k2" / "sst2").mkdir(parents=True)
    (failed / "tiny" / "bottom-k2" / "sst2" / "seed1.json").write_text(json.dumps({"error": "Traceback\nCUDA out of memory"}))
    (failed / "other.json").write_text(json.dumps({"model": "tiny", "strategy": "top", "k": 2, "task": "stsb", "seed": 1, "reason": "diverged"}))
    summary = run_aggregate(tmp_path, paths, expected, failed_dir=failed)
    gaps = summary[(summary["status"] != "ok") & (summary["metric"] == "task_score")].set_index(["strategy", "task"])
    assert gaps.loc[("bottom", "sst2"), ["status", "reason"]].tolist() == ["failed", "CUDA out of memory"]
    assert gaps.loc[("top", "stsb"), ["status", "reason"]].tolist() == ["failed", "diverged"]
    assert gaps.loc[("bottom", "stsb"), "status"] == "missing"
    assert "3 of 6 cells missing (2 failed)" in (tmp_path / "missing.html").read_text()


def test_table_rows_baseline_first_in_config_order_and_percent_of_full(tmp_path):
    paths, expected = write_grid(tmp_path, grid(strategies=("top", "bottom"), ks=(2, 1)))
    summary = load_summary(paths, expected, order={"strategies": ["top", "bottom"], "tasks": ["stsb", "sst2"]})
    table = score_table(summary, "tiny", ["stsb", "sst2"])
    assert table.values[["strategy", "k"]].values.tolist() == [["none", 0], ["top", 1], ["top", 2], ["bottom", 1], ["bottom", 2]]
    assert list(table.values.columns) == ["strategy", "k", "layers_kept", "stsb", "sst2", "avg7", "average"]
    percent = percent_of_full(table, summary, "tiny").values
    assert percent.loc[0, ["stsb", "sst2", "average"]].tolist() == [100.0, 100.0, 100.0]
    assert percent.loc[2, "average"] == pytest.approx(100 * 0.7 / 0.9)


def test_seeds_are_averaged_and_a_missing_seed_makes_the_entry_missing(tmp_path):
    cells = grid(strategies=("top",), tasks=("sst2",), seeds=(1, 2))
    paths, expected = write_grid(tmp_path, cells, skip=[{"strategy": "top", "seed": 2}],
                                 score=lambda cell: 0.8 + 0.1 * (cell["seed"] - 1))
    table = score_table(load_summary(paths, expected), "tiny").values
    assert table.loc[0, "sst2"] == pytest.approx(0.85)
    assert math.isnan(table.loc[1, "sst2"]) and math.isnan(table.loc[1, "average"])


def test_model_notes_appear_in_every_table_format(tmp_path):
    paths, expected = write_grid(tmp_path, grid(model="mini_lm", strategies=()))
    run_aggregate(tmp_path, paths, expected, models=("mini_lm",), notes={"mini_lm": "a sentence-embedding fine-tune & not MLM"})
    tables = tmp_path / "tables"
    assert "a sentence-embedding fine-tune & not MLM" in (tables / "mini_lm.md").read_text()
    assert r"a sentence-embedding fine-tune \& not MLM" in (tables / "mini_lm.tex").read_text()
    assert r"mini\_lm" in (tables / "mini_lm.tex").read_text()
    assert "a sentence-embedding fine-tune &amp; not MLM" in (tables / "mini_lm.html").read_text()


def test_a_corrupt_metrics_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "tiny"')
    with pytest.raises(ValueError, match="bad.json: truncated or corrupt"):
        load_summary([bad])
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"model": "tiny"}))
    with pytest.raises(ValueError, match="incomplete.json: not a valid metrics record"):
        load_summary([incomplete])


def test_several_seeds_give_mean_and_standard_deviation(tmp_path):
    cells = grid(strategies=("top",), tasks=("sst2",), seeds=(1, 2, 3))
    paths, expected = write_grid(tmp_path, cells, score=lambda cell: 0.5 + 0.1 * cell["seed"] - 0.1 * cell["k"])
    run_aggregate(tmp_path, paths, expected)
    stats = pd.read_csv(tmp_path / "seeds.csv")
    row = stats[(stats["strategy"] == "none") & (stats["metric"] == "task_score")].iloc[0]
    assert row["seeds"] == 3
    assert row["mean"] == pytest.approx(0.7)
    assert row["std"] == pytest.approx(0.1)  # sample standard deviation of 0.6, 0.7, 0.8


def test_pruned_latencies_are_their_ratio_times_the_full_models_lowest_timing():
    protocol = {"batch_size": 32}
    latency = {
        ("m", "none", 0, "any"): {"latency_ms": 1200.0, "protocol": protocol},
        ("m", "top", 2, "any"): {"latency_ms": 560.0, "relative_to_full": 0.5, "full_latency_ms_beside": 1100.0, "protocol": protocol},
        ("m", "bottom", 4, "any"): {"latency_ms": 400.0, "relative_to_full": 1 / 3, "full_latency_ms_beside": 1150.0, "protocol": protocol},
        ("other", "none", 0, "any"): {"latency_ms": 90.0, "protocol": protocol},  # another model: its own figure
    }
    expressed = aggregate.in_full_models_figure(latency)
    assert expressed[("m", "none", 0, "any")]["latency_ms"] == 1100.0  # the lowest timing of the full model
    assert expressed[("m", "none", 0, "any")]["latency_ms_measured"] == 1200.0
    assert expressed[("m", "top", 2, "any")]["latency_ms"] == pytest.approx(550.0)
    assert expressed[("m", "bottom", 4, "any")]["latency_ms"] == pytest.approx(1100.0 / 3)
    assert expressed[("m", "top", 2, "any")]["throughput_examples_per_s"] == pytest.approx(32 / 0.55)
    assert expressed[("other", "none", 0, "any")]["latency_ms"] == 90.0
    assert expressed[("other", "none", 0, "any")]["relative_to_full"] == 1.0
