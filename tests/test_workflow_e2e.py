"""The real Snakefile end to end on a tiny random BERT and a few dozen rows of two tasks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tiny import tiny_config, write_config
from workflow_runner import planned_jobs, snakemake

from dropbench.report import aggregate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    config = tiny_config(workdir)
    write_config(workdir, config)
    first_plan = planned_jobs(workdir)
    snakemake(workdir, "--cores", "2")
    return workdir, config, first_plan


def metrics_paths(workdir):
    return sorted(workdir.glob("results/cells/**/metrics.json"))


def test_every_cell_has_metrics_and_one_summary_row(finished_run):
    workdir, config, first_plan = finished_run
    # baseline + 2 strategies x 2 k, for 2 tasks and 1 seed
    expected_cells = (1 + 2 * 2) * 2
    assert len(metrics_paths(workdir)) == expected_cells
    assert first_plan["finetune"] == expected_cells
    assert first_plan["evaluate"] == expected_cells
    assert first_plan["prune"] == 4  # (top, bottom) x (1, 2), shared by both tasks
    assert first_plan["measure_latency"] == 5  # once per architecture: the baseline and the 4 pruned ones
    assert first_plan["prepare_task"] == 2
    assert first_plan["download_model"] == 1
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    scores = summary[summary["metric"] == "task_score"]
    assert len(scores) == expected_cells
    assert not scores.duplicated(["model", "strategy", "k", "task", "seed"]).any()
    baseline = scores[scores["strategy"] == "none"]
    assert set(baseline["k"]) == {0} and len(baseline) == 2
    record = json.loads((workdir / "results/cells/tiny/top-k2/sst2/seed1/metrics.json").read_text())
    assert record["dropped_layers"] == [2, 3]
    assert record["num_layers"] == 2
    latency = json.loads((workdir / "results/latency/tiny/top-k2/any.json").read_text())
    assert latency["num_layers"] == 2 and latency["architecture"] == {"model": "tiny", "strategy": "top", "k": 2, "scope": "any"}
    top_k2 = scores[(scores["strategy"] == "top") & (scores["k"] == 2)]
    # every cell of the architecture carries its figure: the ratio timed beside the full model, times the
    # full model's lowest timing (aggregate.in_full_models_figure)
    expressed = aggregate.read_latency(sorted((workdir / "results/latency").rglob("*.json")))
    assert (top_k2["latency_ms"] == expressed[("tiny", "top", 2, "any")]["latency_ms"]).all()
    assert (top_k2["latency_relative"] == latency["relative_to_full"]).all()
    assert (workdir / "reports" / "figures" / "score_vs_dropped.png").stat().st_size > 0


def test_second_run_schedules_nothing(finished_run):
    workdir, _, _ = finished_run
    assert planned_jobs(workdir) == {}


def test_adding_a_strategy_schedules_only_its_cells(finished_run):
    workdir, _, _ = finished_run
    plan = planned_jobs(workdir, "--config", "strategies=[top,bottom,symmetric]")
    # symmetric at k=1 and k=2: 2 prunes, 2 x 2 tasks cells, then the summary and figures
    assert plan == {"prune": 2, "measure_latency": 2, "finetune": 4, "evaluate": 4, "aggregate": 1, "tables": 1, "plot": 1, "stats": 1,
                    "paper_comparison": 1, "plot_intervals": 1, "all": 1}


def test_deleting_one_metrics_file_reruns_only_its_evaluate(finished_run):
    workdir, _, _ = finished_run
    target = workdir / "results/cells/tiny/bottom-k1/stsb/seed1/metrics.json"
    target.unlink()
    assert planned_jobs(workdir) == {"evaluate": 1, "aggregate": 1, "tables": 1, "plot": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1}
    snakemake(workdir, "--cores", "2")
    assert target.exists()
    assert planned_jobs(workdir) == {}
