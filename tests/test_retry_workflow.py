"""retry_diverged through the real Snakefile on the tiny model: a diverged fine-tune is re-run with
seed + 1000, both runs are kept, the tables count the retry, and nothing else is recomputed.

Grid: the tiny model unpruned (baseline cells only), sst2, seeds 1 and 2. Whether a tiny random model
diverges depends on its initialisation, so the divergence is made deterministic: after the first run
the test rewrites the two runs' dev predictions (with dropbench.evaluate.predictions.save, naming their cell, and
their digest in metrics.json, so they stay valid results): seed 1 gets every example right, seed 2 predicts the minority class everywhere, i.e. at
chance while another seed of its cell is clearly above. Everything after that is the workflow's own.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from test_significance import markdown_tables
from tiny import changed, tiny_config, write_config
from workflow_runner import planned_jobs, snakemake

from dropbench.evaluate import predictions

pytestmark = pytest.mark.slow

CELL = "results/cells/tiny/none-k0/sst2/seed{}"
REPORTS = {"aggregate": 1, "tables": 1, "plot": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1}


def rewrite_predictions(workdir, seed: int, prediction, labels) -> None:
    """A cell's predictions replaced as if its evaluate had written them (bound to the cell, digest recorded)."""
    cell = {"model": "tiny", "strategy": "none", "k": 0, "task": "sst2", "seed": seed}
    digest = predictions.save(workdir / CELL.format(seed) / "predictions.npz", {"validation": (prediction, labels)}, cell=cell)
    metrics = workdir / CELL.format(seed) / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "predictions_sha256": digest}))


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("retry")
    config = tiny_config(workdir, strategies=("top",), k=(1,))
    config["models"]["tiny"]["prune"] = False
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    config["seeds"] = [1, 2]
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2")
    return workdir, config


def test_retry_diverged_0_is_the_default_and_plans_nothing_new(diverged_run):
    workdir, config = diverged_run
    write_config(workdir, {**config, "retry_diverged": 0})
    assert planned_jobs(workdir) == {}
    assert not (workdir / "results" / "retries").exists()


def test_a_diverged_run_is_retried_once_and_kept(diverged_run):
    workdir, config = diverged_run
    labels = predictions.load(workdir / CELL.format(1) / "predictions.npz")["validation"]["label"]
    minority = int(np.argmin(np.bincount(labels)))
    rewrite_predictions(workdir, 1, labels, labels)
    rewrite_predictions(workdir, 2, np.full_like(labels, minority), labels)
    before = {seed: (workdir / CELL.format(seed) / "metrics.json").stat().st_mtime_ns for seed in (1, 2)}

    write_config(workdir, {**config, "retry_diverged": 1})
    # which runs diverged is known only after the checkpoint: the plan holds it and the reports
    assert planned_jobs(workdir) == {"find_diverged": 1, **REPORTS}
    result = snakemake(workdir, "--cores", "2")
    ran = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", result.stdout + result.stderr, flags=re.MULTILINE)
    # (the cards of seeds 1 and 2 are rewritten, as results/stats.csv is: a retried seed gets none)
    assert sorted(set(ran) - set(REPORTS) - {"model_card"}) == ["evaluate", "find_diverged", "finetune"]
    assert ran.count("finetune") == ran.count("evaluate") == 1

    retries = pd.read_csv(workdir / "results" / "retries" / "attempt1.csv")
    assert retries[["seed", "retry_seed", "attempt"]].values.tolist() == [[2, 1002, 1]]
    assert (workdir / CELL.format(1002) / "metrics.json").exists()
    assert {seed: (workdir / CELL.format(seed) / "metrics.json").stat().st_mtime_ns for seed in (1, 2)} == before
    summary = pd.read_csv(workdir / "results" / "summary.csv").query("metric == 'task_score'").set_index("seed")
    assert summary["status"].to_dict()[2] == "retried" and summary.loc[1002, "retry_of"] == 2
    stats = pd.read_csv(workdir / "results" / "stats.csv", keep_default_na=False, na_values=[""])
    interval = stats[(stats.metric == "task_score") & stats.comparison.isna()].iloc[0]
    assert interval["n_seeds"] == 2  # seeds 1 and 1002; the diverged seed 2 is out
    table = markdown_tables((workdir / "reports" / "tables" / "tiny.md").read_text())
    assert table["Diverged runs re-run with another seed"] == [{"strategy": "none", "k": "0", "sst2": "1"}]


def test_a_second_run_plans_nothing(diverged_run):
    workdir, _ = diverged_run
    assert planned_jobs(workdir) == {}


def test_a_partial_report_with_retries_on_never_trains(diverged_run):
    """Issue 24 item 2: the retry checkpoint's inputs are every cell's predictions; a partial report of a
    grid with a missing cell (here a new seed) must not fine-tune it, however the retries stand."""
    workdir, config = diverged_run
    write_config(workdir, {**config, "seeds": [1, 2, 3], "retry_diverged": 1})
    partial = ("--config", "partial_summary=true", "--", "report_only")
    planned = planned_jobs(workdir, *partial)
    assert not {"finetune", "evaluate", "find_diverged", "prepare_task"} & set(planned), planned
    result = snakemake(workdir, "--cores", "2", *partial)
    ran = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", result.stdout + result.stderr, flags=re.MULTILINE)
    assert "finetune" not in ran and "evaluate" not in ran and not (workdir / CELL.format(3)).exists()
    missing = pd.read_csv(workdir / "reports" / "missing_cells.csv")
    assert missing["seed"].tolist() == [3]
    # records made under another learning rate are not re-run by a partial report either: left out, named
    write_config(workdir, {**changed(config, "training.learning_rate", 1e-3), "retry_diverged": 1})
    dry = snakemake(workdir, "-n", *partial)
    assert f"WARNING: damaged result {CELL.format(1)}/finetuned: {CELL.format(1)}/metrics.json records training learning_rate" in dry.stderr
    assert f"{CELL.format(1)}/metrics.json is left out of this partial report" in dry.stderr
    assert not {"finetune", "evaluate", "find_diverged"} & set(planned_jobs(workdir, *partial))
    write_config(workdir, {**config, "retry_diverged": 1})
