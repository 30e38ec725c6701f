"""The layer-importance profile through the real Snakefile on a 3-layer tiny model: adding
``layer_profile`` to a finished run plans exactly the single-layer cells, their cheap scores and the
reports, and re-runs no existing cell."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import copy_of_base_run
from tiny import write_config
from workflow_runner import planned_jobs, snakemake

pytestmark = pytest.mark.slow

REPORTS = {"aggregate": 1, "tables": 1, "plot": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1}
CELLS = ("results/cells/tiny/none-k0/sst2/seed1/metrics.json", "results/cells/tiny/top-k1/sst2/seed1/metrics.json")


def test_adding_the_layer_profile_runs_only_its_cells_and_writes_the_profile(tmp_path, base_run_3_layers):
    config = copy_of_base_run(base_run_3_layers, tmp_path)  # top-k1 on sst2, finished
    before = {path: (tmp_path / path).stat().st_mtime_ns for path in CELLS}

    write_config(tmp_path, {**config, "layer_profile": True})
    assert planned_jobs(tmp_path) == {"prune": 3, "measure_latency": 3, "finetune": 3, "evaluate": 3,
                                      "layer_profile_scores": 1, "layer_profile": 1, **REPORTS}
    snakemake(tmp_path, "--cores", "2")
    assert planned_jobs(tmp_path) == {}
    assert {path: (tmp_path / path).stat().st_mtime_ns for path in CELLS} == before

    summary = pd.read_csv(tmp_path / "results/summary.csv", dtype={"dropped_layers": str})
    scores = summary[summary["metric"] == "task_score"]
    assert sorted(scores["strategy"]) == ["layer1", "layer2", "layer3", "none", "top"]
    assert set(scores.loc[scores["strategy"].str.startswith("layer"), "dropped_layers"]) == {"0", "1", "2"}
    importance = pd.read_csv(tmp_path / "reports/layer_profile_importance.csv")
    assert list(importance["layer"]) == [1, 2, 3]
    base = scores.loc[scores["strategy"] == "none", "value"].iloc[0]
    for row in importance.itertuples():
        cell = scores.loc[scores["strategy"] == f"layer{row.layer}", "value"].iloc[0]
        assert row.importance == pytest.approx(base - cell)
    correlations = pd.read_csv(tmp_path / "reports/layer_profile_correlations.csv")
    assert len(correlations) == 4 and set(correlations["n_layers"]) == {3}
    text = (tmp_path / "reports/layer_profile.md").read_text()
    # The tiny random model's full model may score at chance: then the profile withholds its claims, as the
    # tables mark that baseline (dropbench.report.claims, issue 24 item 3); else it ranks the layers.
    from dropbench.report import aggregate, claims

    if claims.withheld(aggregate.read_summary(tmp_path / "results/summary.csv"), "tiny", "sst2"):
        assert "withheld" in text and "most important layer:" not in text
    else:
        assert "## tiny (3 layers)" in text and "no interval (1 seed)" in text
    for figure in ("layer_importance", "layer_score_correlation"):
        assert (tmp_path / f"reports/figures/{figure}.png").stat().st_size > 0
