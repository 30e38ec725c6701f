"""The [CLS] threshold cells through the real Snakefile on the tiny model (issue 15 item 3): adding
``cls_thresholds`` to a finished run runs exactly the new cells, which record the k that resulted;
``scoring.split: dev`` plans only the data-driven prunes and their cells again. (How dev-scored cells are
marked is tested on the records in test_cls_threshold.py; the same fields carry ``train`` here.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import copy_of_base_run
from tiny import changed, write_config
from workflow_runner import planned_jobs, snakemake

pytestmark = pytest.mark.slow

REPORTS = {"aggregate": 1, "tables": 1, "plot": 1, "plot_layer_scores": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1}
CLS = "results/cells/tiny/cls_above_950-k0/sst2/seed1"
OLD_CELLS = ["results/cells/tiny/none-k0/sst2/seed1", "results/cells/tiny/top-k1/sst2/seed1"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base_run):
    workdir = tmp_path_factory.mktemp("cls")
    return workdir, copy_of_base_run(base_run, workdir)


def test_adding_thresholds_runs_exactly_the_threshold_cells(finished_run):
    workdir, config = finished_run
    before = {cell: (workdir / cell / "metrics.json").stat().st_mtime_ns for cell in OLD_CELLS}
    config = {**config, "cls_thresholds": [0.95]}
    write_config(workdir, config)
    assert planned_jobs(workdir) == {"prune": 1, "measure_latency": 1, "finetune": 1, "evaluate": 1, **REPORTS}
    snakemake(workdir, "--cores", "2")
    assert planned_jobs(workdir) == {}
    assert {cell: (workdir / cell / "metrics.json").stat().st_mtime_ns for cell in OLD_CELLS} == before

    # A randomly initialised tiny BERT barely changes [CLS] in any layer (similarity ~0.9999): every layer
    # is above 0.95, so the rule keeps the one layer that changes [CLS] most and drops the other three.
    pruning = json.loads((workdir / "results/models/tiny/pruned/cls_above_950-k0/sst2/pruning.json").read_text())
    assert pruning["k"] == 3 and len(pruning["kept"]) == 1 and pruning["threshold"] == 0.95
    assert pruning["kept"] == [min(range(4), key=lambda layer: (pruning["scores"][layer], layer))]
    assert pruning["scored_on"] == "train" and pruning["score_kind"] == "cls"
    metrics = json.loads((workdir / CLS / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["k"], metrics["threshold"], metrics["scored_on"]) == ("cls_above_950", 0, 0.95, "train")
    assert metrics["dropped_layers"] == pruning["dropped"] and metrics["num_layers"] == 1

    summary = pd.read_csv(workdir / "results/summary.csv").query("metric == 'task_score'")
    row = summary[summary["strategy"] == "cls_above_950"].iloc[0]
    assert (row["k"], row["layers_kept"], row["scored_on"]) == (0, 1, "train")
    assert summary[summary["strategy"] == "top"]["scored_on"].isna().all()  # data-free: not scored
    table = (workdir / "reports/tables/tiny.md").read_text()
    assert "cls_above_950: the paper's rule" in table and "scored on dev" not in table


def test_scoring_on_dev_plans_only_the_data_driven_prunes_again(finished_run):
    workdir, config = finished_run
    write_config(workdir, changed({**config, "cls_thresholds": [0.95]}, "scoring.split", "dev"))
    assert planned_jobs(workdir) == {"prune": 1, "measure_latency": 1, "finetune": 1, "evaluate": 1, **REPORTS}
    write_config(workdir, changed({**config, "cls_thresholds": [0.95]}, "scoring.split", "train"))
    assert planned_jobs(workdir) == {}  # the default, written out, changes nothing
