"""The committed oracle run (reports/oracle/, config/oracle.yaml) holds every cell of its config, its report
regenerates from its committed summary and tests with identical numbers, and the greedy cells drop the layers
their search records chose. Reads committed files only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dropbench.report import aggregate, oracle
from dropbench.plan import grid

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "reports" / "oracle"


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return aggregate.read_summary(SNAPSHOT / "summary.csv")


def test_the_snapshot_holds_every_cell_of_its_config(summary):
    config = yaml.safe_load((REPO / "config" / "oracle.yaml").read_text())
    expected = {(c.strategy, c.k, c.seed) for c in grid.cells(config)}
    scores = summary[summary["metric"] == "task_score"]
    assert set(zip(scores["strategy"], scores["k"], scores["seed"])) == expected and len(expected) == 51 * 3


def test_the_report_regenerates_from_the_committed_summary_and_tests(summary):
    committed = pd.read_csv(SNAPSHOT / "oracle_subsets.csv")
    held_out = committed.assign(seed=1, held_out=committed["held_out_mean"])[["model", "strategy", "k", "task", "seed", "held_out"]]
    tests = pd.read_csv(SNAPSHOT / "stats.csv")
    tests = tests[tests["comparison"].fillna("").ne("")]
    subsets, heuristics, additivity, _ = oracle.oracle_tables(summary, tests, held_out)
    pd.testing.assert_frame_equal(subsets.reset_index(drop=True), committed, check_dtype=False)
    pd.testing.assert_frame_equal(heuristics.reset_index(drop=True).fillna(""),
                                  pd.read_csv(SNAPSHOT / "oracle_heuristics.csv", keep_default_na=False).fillna(""),
                                  check_dtype=False)
    pd.testing.assert_frame_equal(additivity.reset_index(drop=True), pd.read_csv(SNAPSHOT / "oracle_additivity.csv"),
                                  check_dtype=False)


def test_the_greedy_cells_drop_what_their_search_chose_on_held_out_rows(summary):
    steps = [json.loads((SNAPSHOT / "greedy" / f"step{s}.json").read_text()) for s in (1, 2, 3, 4)]
    for step in steps:
        assert step["chosen_on"] == "held_out"
        assert step["held_out_task_score"] == max(c["held_out_task_score"] for c in step["candidates"])
    scores = summary[(summary["metric"] == "task_score") & (summary["strategy"] == "greedy")]
    for k in (2, 4):
        dropped = {str(d) for d in scores.loc[scores["k"] == k, "dropped_layers"]}
        assert dropped == {" ".join(str(layer - 1) for layer in sorted(steps[k - 1]["order"]))}
