"""Reports regenerate incrementally: a new strategy adds only its cells, a style change only the plots.

One tiny run (1 task, strategy top, k 1: a copy of conftest's base_run), then the config changes step by step; the
tests run in order.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml
from conftest import copy_of_base_run, fresh_copy_of_base_run
from tiny import write_config
from workflow_runner import planned_jobs, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base_run):
    first_plan = planned_jobs(fresh_copy_of_base_run(base_run, tmp_path_factory.mktemp("report_fresh")))
    workdir = tmp_path_factory.mktemp("report")
    return workdir, copy_of_base_run(base_run, workdir), first_plan


def figure_data(workdir, name):
    return pd.read_csv(workdir / "reports" / "figures" / f"{name}.csv")


def with_config(workdir, config, **changes):
    write_config(workdir, {**config, **changes})


def test_every_cell_draws_its_training_loss_and_records_its_fit(finished_run):
    workdir, config, _ = finished_run
    curves = figure_data(workdir, "training_loss")
    assert set(zip(curves["strategy"], curves["k"])) == {("none", 0), ("top", 1)}
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    scores = summary[summary["metric"] == "task_score"]
    assert scores["train_fit"].notna().all() and set(scores["head"]) == {"native"}


def test_first_run_plans_every_report_job_once(finished_run):
    workdir, _, first_plan = finished_run
    assert first_plan == {
        "download_model": 1, "prepare_task": 1, "prune": 1, "measure_latency": 2, "finetune": 2, "evaluate": 2,
        "aggregate": 1, "tables": 1, "plot": 1, "plot_layer_scores": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1,
    }
    assert set(figure_data(workdir, "score_vs_dropped")["strategy"]) == {"top"}
    assert figure_data(workdir, "layer_scores").empty  # no data-driven strategy in this grid


def test_partial_summary_shows_a_new_strategy_as_missing(finished_run):
    workdir, config, _ = finished_run
    with_config(workdir, config, strategies=["top", "bottom"])
    # Only what exists is aggregated; the bottom cell is listed as missing, nothing is trained.
    snakemake(workdir, "--cores", "2", "--config", "partial_summary=true", "--", "report_only")
    assert not (workdir / "results" / "cells" / "tiny" / "bottom-k1").exists()
    missing = pd.read_csv(workdir / "reports" / "missing_cells.csv")
    assert missing[["strategy", "k", "task", "status"]].values.tolist() == [["bottom", 1, "sst2", "missing"]]
    bottom = figure_data(workdir, "score_vs_dropped").query("strategy == 'bottom' and k == 1")
    assert bottom["status"].tolist() == ["missing"] and bottom["value"].isna().all()
    table = (workdir / "reports" / "tables" / "tiny.md").read_text()
    assert "Missing cells: 1 of 3" in table
    # the paper-score table: sst2 missing, so avg7 and the average have no value
    assert re.search(r"^\| bottom .*\| +missing \| +n/a \| +n/a \|$", table, re.MULTILINE)


def test_adding_a_strategy_runs_only_its_cells_and_the_reports(finished_run):
    workdir, config, _ = finished_run
    with_config(workdir, config, strategies=["top", "bottom"])
    plan = planned_jobs(workdir)
    # bottom k=1 on sst2: one prune, one cell; then the tables and the summary figures (not the layer scores)
    assert plan == {"prune": 1, "measure_latency": 1, "finetune": 1, "evaluate": 1, "aggregate": 1, "tables": 1, "plot": 1, "stats": 1,
                    "paper_comparison": 1, "plot_intervals": 1, "all": 1}
    snakemake(workdir, "--cores", "2")
    lines = figure_data(workdir, "score_vs_dropped")
    # A tiny model may predict one class (degenerate) and its baseline be at chance: results all the same.
    assert set(lines["strategy"]) == {"top", "bottom"} and lines["status"].isin(["ok", "degenerate"]).all()
    assert lines["value"].notna().all()
    heat = figure_data(workdir, "retained_heatmap")
    assert not heat.query("strategy == 'bottom'")["status"].isin(["missing"]).any()
    assert set(figure_data(workdir, "pareto")["strategy"]) == {"none", "top", "bottom"}
    assert pd.read_csv(workdir / "reports" / "missing_cells.csv").empty
    tests = pd.read_csv(workdir / "results" / "stats.csv").dropna(subset=["comparison"]).query("metric == 'task_score'")
    assert sorted(zip(tests["strategy"], tests["comparison"])) == [("bottom", "none-k0"), ("top", "bottom-k1"), ("top", "none-k0")]
    assert tests["p_value"].between(0, 1).all() and (tests["p_adjusted"] >= tests["p_value"]).all()


def test_plot_style_and_data_driven_strategies_rerun_only_their_rules(finished_run):
    workdir, config, _ = finished_run
    strategies = ["top", "bottom"]
    with_config(workdir, config, strategies=strategies, plots={"dpi": 72, "style": "ggplot"})
    assert planned_jobs(workdir) == {"plot": 1, "plot_layer_scores": 1, "plot_intervals": 1, "all": 1}
    with_config(workdir, config, strategies=[*strategies, "contribution"])
    assert planned_jobs(workdir) == {
        "prune": 1, "measure_latency": 1, "finetune": 1, "evaluate": 1, "aggregate": 1, "tables": 1, "plot": 1, "plot_layer_scores": 1,
        "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1,
    }
    with_config(workdir, config, strategies=strategies)


def test_report_is_one_html_file_with_every_figure_table_and_the_missing_count(finished_run):
    workdir, _, _ = finished_run
    report = workdir / "reports" / "report.html"
    snakemake(workdir, "--report", str(report))
    text = report.read_text()
    # every result is embedded in the one file, not linked
    for name in ("score_vs_dropped", "retained_heatmap", "pareto", "layer_scores", "score_intervals", "training_loss"):
        assert re.search(rf"data:image/png;[^\"]*filename={name}\.png;base64,iVBOR", text), name
    for name in ("tiny.html", "missing_cells.html", "paper_comparison.html"):
        assert f"data:text/html;charset=utf8;filename={name};base64," in text
    assert "data:text/csv;charset=utf8;filename=summary.csv;base64," in text
    assert "data:text/csv;charset=utf8;filename=stats.csv;base64," in text
    expected = yaml.safe_load((workdir / "config.yaml").read_text())
    cells = 1 + len(expected["strategies"])
    assert f'"missing": "0 of {cells} cells"' in text
