"""The paper's score per task, every official metric in its own column, and the paper's 7-task average."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_aggregate import grid, metrics_record, run_aggregate

from dropbench.report import paper_score
from dropbench.report.aggregate import load_summary
from dropbench.report.tables import metrics_table, score_table

SEVEN = list(paper_score.AVG7_TASKS)


def write(root, cells, metrics_for):
    paths = []
    for i, cell in enumerate(cells):
        path = root / f"{i}.json"
        path.write_text(json.dumps(metrics_record(**cell, metrics=metrics_for(cell))))
        paths.append(path)
    return paths


def distinct_metrics(cell):
    """Each metric its own value, so a column can only match the metric it names."""
    values = {"accuracy": 0.81, "f1": 0.72, "pearson": 0.63, "spearmanr": 0.54, "matthews_correlation": 0.45,
              "validation_matched_accuracy": 0.86, "validation_mismatched_accuracy": 0.77}
    return {name: values[name] - 0.1 * cell["k"] for name in paper_score.metric_keys(cell["task"])}


def test_paper_score_rows_use_the_papers_metric_per_task(tmp_path):
    cells = grid(strategies=("top",), tasks=("mrpc", "stsb", "mnli", "cola"))
    summary = load_summary(write(tmp_path, cells, distinct_metrics), cells)
    paper = summary[(summary["metric"] == "paper_score") & (summary["strategy"] == "none")].set_index("task")["value"]
    assert paper.to_dict() == pytest.approx({"mrpc": 0.81, "stsb": 0.63, "mnli": 0.86, "cola": 0.45})
    task_scores = summary[(summary["metric"] == "task_score") & (summary["strategy"] == "none")].set_index("task")["value"]
    assert task_scores["mrpc"] == pytest.approx((0.81 + 0.72) / 2)  # the GLUE-style mean is kept beside it
    chosen = load_summary(write(tmp_path, cells, distinct_metrics), cells, paper_score_metrics={"stsb": "spearmanr"})
    stsb = chosen[(chosen["metric"] == "paper_score") & (chosen["task"] == "stsb") & (chosen["strategy"] == "none")]
    assert stsb["value"].tolist() == pytest.approx([0.54])


def test_bad_paper_score_choice_names_the_key_and_the_allowed_values():
    with pytest.raises(ValueError, match=r"config key 'paper_score.stsb': bad value 'accuracy'; allowed: pearson, spearmanr, mean"):
        paper_score.paper_metrics(["stsb"], {"stsb": "accuracy"})
    with pytest.raises(ValueError, match=r"'paper_score.qnli': 'qnli' is not a task of this grid; allowed: stsb"):
        paper_score.paper_metrics(["stsb"], {"qnli": "accuracy"})


def test_every_official_metric_has_its_own_column(tmp_path):
    cells = grid(strategies=("top",), tasks=("mrpc", "stsb", "mnli"))
    summary = load_summary(write(tmp_path, cells, distinct_metrics), cells)
    table = metrics_table(summary, "tiny", ["mrpc", "stsb", "mnli"]).values
    assert list(table.columns)[3:] == ["mrpc f1", "mrpc accuracy", "stsb pearson", "stsb spearmanr",
                                       "mnli matched_accuracy", "mnli mismatched_accuracy"]
    assert table.loc[0, ["mrpc f1", "mrpc accuracy", "mnli mismatched_accuracy"]].tolist() == pytest.approx([0.72, 0.81, 0.77])


def test_avg7_is_the_mean_paper_score_over_the_seven_tasks(tmp_path):
    cells = grid(strategies=("top",), tasks=(*SEVEN, "cola"))
    summary = load_summary(write(tmp_path, cells, distinct_metrics), cells)
    table = score_table(summary, "tiny", [*SEVEN, "cola"]).values
    paper = {"sst2": 0.81, "mnli": 0.86, "qnli": 0.81, "qqp": 0.81, "stsb": 0.63, "rte": 0.81, "mrpc": 0.81}
    assert table.loc[0, "avg7"] == pytest.approx(sum(paper.values()) / 7)  # CoLA left out
    assert table.loc[0, "average"] != pytest.approx(table.loc[0, "avg7"])
    assert list(table.columns)[-2:] == ["avg7", "average"]


def test_avg7_without_all_seven_tasks_says_na_and_why(tmp_path):
    cells = grid(strategies=("top",), tasks=("sst2", "stsb"))
    run_aggregate(tmp_path, write(tmp_path, cells, distinct_metrics), cells)
    md = (tmp_path / "tables" / "tiny.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| strategy"))
    assert "avg7" in header and "average" in header
    baseline = next(line for line in md.splitlines() if line.startswith("| none"))
    assert "n/a" in baseline
    assert "avg7 n/a: needs all of sst2, mnli, qnli, qqp, stsb, rte, mrpc; not in the grid: mnli, qnli, qqp, rte, mrpc" in md
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["metric"]) >= {"paper_score", "task_score", "pearson", "spearmanr", "accuracy"}


def test_paper_score_config_is_checked_before_any_job(tmp_path):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate
    from tiny import REPO, tiny_config

    from dropbench.plan import config_check

    config = tiny_config(tmp_path, strategies=("top",), k=(1,))
    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")

    def checked(choice):
        candidate = {**config, "paper_score": choice}
        validate(candidate, schema)
        config_check.check(candidate)

    checked({"stsb": "spearmanr"})
    with pytest.raises(WorkflowError, match="accuracy"):
        checked({"stsb": "accuracy"})
    with pytest.raises(config_check.ConfigError, match=r"'paper_score.qnli': 'qnli' is not a task of this grid"):
        checked({"qnli": "accuracy"})
