"""task_specific_<base> and iterative_<base> through the real Snakefile on the tiny BERT: adding them to
a finished grid runs exactly their jobs, their cells sit in the same summary and tables as smaller models,
and re-running a task_specific cell's second stage reuses its first."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import copy_of_base_run
from tiny import write_config
from workflow_runner import planned_jobs, snakemake

pytestmark = pytest.mark.slow

REPORTS = {"aggregate": 1, "tables": 1, "plot": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1}
CELLS = "results/cells/tiny/{}-k1/sst2/seed1"
FAMILIES = ["task_specific_top", "iterative_top"]


@pytest.fixture(scope="module")
def grown_run(tmp_path_factory, base_run):
    """The grid none + top at k=1 on sst2, finished (a copy of conftest's base_run); then task_specific_top and
    iterative_top added."""
    workdir = tmp_path_factory.mktemp("families_workflow")
    config = copy_of_base_run(base_run, workdir)
    config["strategies"] = ["top", *FAMILIES]
    write_config(workdir, config)
    plan = planned_jobs(workdir)
    snakemake(workdir, "--cores", "2")
    return workdir, config, plan


def test_adding_the_families_runs_exactly_their_jobs(grown_run):
    workdir, config, plan = grown_run
    assert plan == {"prune": 2, "measure_latency": 2, "frozen_finetune": 1, "finetune": 1, "iterative_finetune": 1,
                    "evaluate": 2, **REPORTS}
    assert planned_jobs(workdir) == {}


def test_family_cells_are_pruned_models_in_the_summary(grown_run):
    workdir, _, _ = grown_run
    for variant in ["top", *FAMILIES]:
        record = json.loads((workdir / CELLS.format(variant) / "metrics.json").read_text())
        assert (record["strategy"], record["num_layers"], record["dropped_layers"]) == (variant, 3, [3])
        model_config = json.loads((workdir / CELLS.format(variant) / "finetuned" / "config.json").read_text())
        assert model_config["num_hidden_layers"] == 3
    first_stage = workdir / CELLS.format("task_specific_top") / "frozen_finetune"
    assert json.loads((first_stage / "config.json").read_text())["num_hidden_layers"] == 3
    stage1 = json.loads((workdir / CELLS.format("task_specific_top") / "frozen_train_log.json").read_text())
    stage2 = json.loads((workdir / CELLS.format("task_specific_top") / "train_log.json").read_text())
    assert stage1["layers"]["freeze"] == [3] and stage1["steps"] == stage2["steps"] == 4  # 32 rows, batch 8, 1 epoch
    iterative = json.loads((workdir / CELLS.format("iterative_top") / "train_log.json").read_text())
    assert iterative["layers"]["drop_steps"] == {"8": [3]} and iterative["steps"] == 12  # 2 epochs, drop, 1 epoch

    summary = pd.read_csv(workdir / "results" / "summary.csv")
    scores = summary[summary["metric"] == "task_score"].set_index("strategy")
    assert set(scores.index) == {"none", "top", *FAMILIES}
    assert (scores.loc[FAMILIES, "layers_kept"] == 3).all() and scores.loc[FAMILIES, "value"].notna().all()
    assert "task_specific_top" in (workdir / "reports" / "tables" / "tiny.md").read_text()


def test_the_second_stage_re_runs_without_the_first(grown_run):
    workdir, _, _ = grown_run
    assert planned_jobs(workdir, "--forcerun", "finetune") == {"finetune": 3, "evaluate": 3, **REPORTS}


def test_a_data_driven_base_keeps_its_per_task_scope(grown_run):
    workdir, config, _ = grown_run
    write_config(workdir, {**config, "strategies": [*config["strategies"], "iterative_contribution"]})
    try:
        assert planned_jobs(workdir) == {"prune": 1, "measure_latency": 1, "iterative_finetune": 1, "evaluate": 1,
                                         "plot_layer_scores": 1, **REPORTS}
    finally:
        write_config(workdir, config)
