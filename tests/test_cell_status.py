"""Degenerate cells (one predicted value), standard JSON, and percent of a full model at chance."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_aggregate import grid, metrics_record, run_aggregate

from dropbench.evaluate import chance, metrics
from dropbench.report import plots
from dropbench.report.aggregate import cell_means, load_summary
from dropbench.runtime.atomic import write_json
from dropbench.evaluate.evaluation import cell_status, task_score
from dropbench.plan.cells import Cell
from dropbench.plan.records import METRICS_SCHEMA, record_problem


def test_constant_prediction_is_degenerate_with_null_not_nan():
    scores = metrics.compute("stsb", np.full(5, 2.5), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert all(math.isnan(v) for v in scores.values())
    status, clean = cell_status(scores, {"validation": 1})
    assert status == "degenerate" and clean == {"pearson": None, "spearmanr": None}
    assert task_score("stsb", clean) is None
    assert cell_status({"accuracy": 0.7}, {"validation": 2}) == ("ok", {"accuracy": 0.7})
    with pytest.raises(ValueError, match="undefined metric although"):
        cell_status({"pearson": math.nan}, {"validation": 3})


def test_json_is_standard_nan_is_refused(tmp_path):
    with pytest.raises(ValueError, match="JSON compliant"):
        write_json(tmp_path / "m.json", {"pearson": math.nan})
    assert not list(tmp_path.iterdir())


def test_schema_allows_null_scores_only_for_degenerate_cells():
    record = metrics_record(task="stsb", metrics={"pearson": None, "spearmanr": None}, status="degenerate")
    assert record_problem(record) is None
    assert "None is not of type 'number'" in record_problem({**record, "status": "ok"})
    assert record_problem({**record, "status": "collapsed"}) is not None


def test_metrics_schema_is_package_data():
    # A plain `pip install .` ships only the package: the schema must live inside it and be declared.
    import importlib.resources
    import tomllib

    from tiny import REPO

    schema = importlib.resources.files("dropbench") / "schemas" / "metrics.schema.yaml"
    assert schema.is_file() and str(METRICS_SCHEMA) == str(schema)
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dropbench"]
    assert "schemas/*.yaml" in package_data
    assert not (REPO / "workflow" / "schemas" / "metrics.schema.yaml").exists()  # one copy only


def write_records(root, records):
    paths = []
    for i, record in enumerate(records):
        paths.append(root / f"{i}.json")
        paths[-1].write_text(json.dumps(record))
    return paths


def test_degenerate_cell_is_shown_as_such_not_as_missing(tmp_path):
    cells = grid()
    records = [metrics_record(**cell, score=0.8) for cell in cells]
    bad = next(i for i, c in enumerate(cells) if c["strategy"] == "top" and c["task"] == "stsb")
    records[bad] = metrics_record(**cells[bad], metrics={"pearson": None, "spearmanr": None}, status="degenerate")
    summary = run_aggregate(tmp_path, write_records(tmp_path, records), cells)
    rows = summary[(summary["strategy"] == "top") & (summary["task"] == "stsb")]
    assert set(rows["status"]) == {"degenerate"} and rows["value"].isna().all()
    md = (tmp_path / "tables" / "tiny.md").read_text()
    assert "Missing cells: none" in md
    top = [line for line in md.splitlines() if line.startswith("| top")]
    assert all("degenerate" in line and "missing" not in line for line in top)
    assert "degenerate: the model predicts one value" in md
    assert "NaN" not in (tmp_path / "summary.csv").read_text()


def test_chance_levels_from_dev_labels():
    labels = np.array([1, 1, 1, 0])
    levels = chance.chance_levels(["accuracy", "f1", "matthews_correlation"], labels)
    assert levels == pytest.approx({"accuracy": 0.75, "f1": 2 * 0.75 / 1.75, "matthews_correlation": 0.0})
    # the majority-class predictor is at chance on both MRPC metrics
    scores = metrics.compute("mrpc", np.ones(4, dtype=int), labels)
    assert all(chance.at_chance(name, scores[name], levels[name]) for name in scores)
    assert not chance.at_chance("validation_matched_accuracy", 0.8, 0.75)
    assert chance.at_chance("validation_matched_accuracy", 0.755, 0.75)
    assert chance.at_chance("pearson", None, 0.0) and not chance.at_chance("pearson", 0.2, 0.0)


def test_percent_of_a_baseline_at_chance_is_not_reported(tmp_path):
    """MRPC's majority-class predictor: 'percent of the full model' would read ~100%."""
    cells = grid(tasks=("mrpc", "sst2"))
    records = []
    for cell in cells:
        if cell["task"] == "mrpc":  # every cell predicts the majority class: accuracy and F1 at chance
            record = metrics_record(**cell, metrics={"f1": 0.81, "accuracy": 0.684})
            record["chance"] = {"f1": 0.8125, "accuracy": 0.684}
        else:
            record = metrics_record(**cell, score=0.9 - 0.1 * cell["k"])
        records.append(record)
    summary = run_aggregate(tmp_path, write_records(tmp_path, records), cells)
    base = summary[(summary["strategy"] == "none") & (summary["task"] == "mrpc") & (summary["metric"] == "paper_score")]
    assert base["at_chance"].all() and base["chance"].iloc[0] == pytest.approx(0.684)
    md = (tmp_path / "tables" / "tiny.md").read_text()
    percent = md.split("### Percent of the full model")[1].split("###")[0]
    top = next(line for line in percent.splitlines() if line.startswith("| top"))
    cells_text = [c.strip() for c in top.strip("|").split("|")]
    # strategy, k, layers kept, mrpc, sst2, avg7, average: average over sst2 alone (above chance)
    assert cells_text[3] == "n/a (chance)" and cells_text[4] == f"{100 * 0.7 / 0.9:.1f}"
    assert cells_text[6] == f"{100 * 0.7 / 0.9:.1f}"
    assert "full model scores at chance on this task" in md
    # a grid whose only task is at chance: no average to draw, and the heatmap says why (not "missing")
    mrpc_only = [record for record in records if record["task"] == "mrpc"]
    (tmp_path / "mrpc").mkdir()
    summary = load_summary(write_records(tmp_path / "mrpc", mrpc_only), [c for c in cells if c["task"] == "mrpc"])
    retained = plots.percent_retained(summary, [])
    assert set(retained["status"]) == {"chance"} and retained["percent"].isna().all()
    chance_part = md.split("### Full model against chance")[1]
    assert "| mrpc" in chance_part and "0.0" in chance_part and "yes" in chance_part


def test_figures_mark_degenerate_and_chance(tmp_path):
    cells = grid(tasks=("mrpc", "stsb"))
    records = []
    for cell in cells:
        if cell["task"] == "mrpc":
            record = metrics_record(**cell, metrics={"f1": 0.81, "accuracy": 0.684})
            record["chance"] = {"f1": 0.8125, "accuracy": 0.684}
        elif cell["strategy"] == "top":
            record = metrics_record(**cell, metrics={"pearson": None, "spearmanr": None}, status="degenerate")
        else:
            record = metrics_record(**cell, score=0.8)
        records.append(record)
    load_summary(write_records(tmp_path, records), cells).to_csv(tmp_path / "summary.csv", index=False)
    means = cell_means(pd.read_csv(tmp_path / "summary.csv"))
    retained = plots.percent_retained(pd.read_csv(tmp_path / "summary.csv"), [])
    assert set(retained.loc[retained["task"] == "mrpc", "status"]) == {"chance"}
    assert retained.loc[retained["task"] == "mrpc", "percent"].isna().all()
    stsb_top = retained[(retained["task"] == "stsb") & (retained["strategy"] == "top")]
    assert stsb_top["status"].tolist() == ["degenerate"]
    _, data = plots.score_vs_dropped(means, [], plots.check_style({}))
    assert "degenerate" in set(data.loc[data["panel"] == "stsb", "status"])


def test_a_constant_model_is_recorded_degenerate_in_standard_json(tmp_path):
    import torch
    from tiny import build_tiny_bert, write_tiny_tasks
    from transformers import AutoModelForSequenceClassification

    from dropbench.evaluate.evaluation import write_cell_metrics
    from dropbench.data.prepare import prepare_task

    model_dir = build_tiny_bert(tmp_path / "model")
    source = write_tiny_tasks(tmp_path / "glue", rows=16)["stsb"]["source"]
    prepare_task(model_dir, "stsb", source, tmp_path / "features", max_length=32)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    with torch.no_grad():
        model.classifier.weight.zero_()  # every row gets the bias: one predicted value
        model.classifier.bias.fill_(2.5)
    model.save_pretrained(tmp_path / "finetuned")
    (tmp_path / "train_log.json").write_text(json.dumps({"train_seconds": 1.0, "device": "cpu"}))
    out = tmp_path / "metrics.json"
    cell = Cell("tiny", "none", 0, "stsb", 1)
    write_cell_metrics(cell, tmp_path / "finetuned", model_dir, tmp_path / "features", tmp_path / "train_log.json", 8, out)
    record = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))
    assert record["status"] == "degenerate" and record["distinct_predictions"] == {"validation": 1}
    assert record["metrics"] == {"pearson": None, "spearmanr": None} and record["task_score"] is None
    assert record["chance"] == {"pearson": 0.0, "spearmanr": 0.0}


def test_the_heatmap_shows_the_tables_percent_of_full_for_every_cell(tmp_path):
    """Issue 23 item 1: the tables and the heatmap computed percent retained and its average differently
    (paper score vs task score for MRPC and STS-B; average over tasks above chance vs over all)."""
    from dropbench.report import tables as report_tables

    cells = grid(tasks=("sst2", "mrpc", "stsb"), seeds=(1, 2))
    records = []
    for cell in cells:
        if cell["task"] == "mrpc":  # the unpruned model at chance on MRPC
            record = metrics_record(**cell, metrics={"f1": 0.81, "accuracy": 0.684})
            record["chance"] = {"f1": 0.8125, "accuracy": 0.684}
        elif cell["task"] == "stsb":  # Pearson and Spearman apart: the paper score and the task score differ
            shift = 0.1 * cell["k"] / 2
            record = metrics_record(**cell, metrics={"pearson": 0.8 - shift, "spearmanr": 0.6 - 2 * shift})
        else:
            record = metrics_record(**cell, score=0.9 - 0.05 * cell["k"] + 0.01 * cell["seed"])
        records.append(record)
    load_summary(write_records(tmp_path, records), cells).to_csv(tmp_path / "summary.csv", index=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    tasks = ["sst2", "mrpc", "stsb"]
    table = report_tables.percent_of_full(report_tables.score_table(summary, "tiny", tasks), summary, "tiny")
    outputs = {"retained_heatmap": str(tmp_path / "h.png"), "retained_heatmap_pdf": str(tmp_path / "h.pdf"),
               "retained_heatmap_data": str(tmp_path / "h.csv"), "score_vs_dropped": str(tmp_path / "s.png"),
               "score_vs_dropped_pdf": str(tmp_path / "s.pdf"), "score_vs_dropped_data": str(tmp_path / "s.csv"),
               "pareto": str(tmp_path / "p.png"), "pareto_pdf": str(tmp_path / "p.pdf"), "pareto_data": str(tmp_path / "p.csv")}
    plots.plot_all(tmp_path / "summary.csv", outputs, {"dpi": 30})
    heat = pd.read_csv(tmp_path / "h.csv").set_index(["strategy", "k", "task"])
    values, marks = table.values.set_index(["strategy", "k"]), table.marks.set_index(["strategy", "k"])
    compared = 0
    for (strategy, k), row in values.iterrows():
        if strategy == "none":
            continue
        for column in [*tasks, "average"]:
            drawn = heat.loc[(strategy, k, column)]
            if pd.isna(row[column]):
                assert pd.isna(drawn["percent"]) and drawn["status"] in ("chance", "missing", "degenerate")
            else:
                assert drawn["percent"] == pytest.approx(row[column]), (strategy, k, column)
            compared += 1
    assert compared == 2 * 4
    assert heat.loc[("top", 2, "mrpc"), "status"] == "chance" and math.isnan(heat.loc[("top", 2, "mrpc"), "percent"])
    assert heat.loc[("top", 2, "stsb"), "percent"] == pytest.approx(100 * 0.7 / 0.8)  # Pearson, the paper's metric
    # the average leaves out MRPC (at chance) instead of being withheld altogether
    assert heat.loc[("top", 2, "average"), "percent"] == pytest.approx(row_average(summary, ("sst2", "stsb")))
    assert marks.loc[("top", 2), "mrpc"] == "chance"


def row_average(summary: pd.DataFrame, tasks) -> float:
    scores = summary[(summary["metric"] == "task_score") & summary["task"].isin(tasks)]
    means = scores.groupby(["strategy", "task"])["value"].mean().unstack()
    return 100 * means.loc["top"].mean() / means.loc["none"].mean()
