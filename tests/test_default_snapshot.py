"""The committed default run (reports/default/) timed every architecture of config/config.yaml once,
with the config's protocol, and the figures follow the depth.

Reads committed files only; nothing is timed here (a timing taken inside the suite would depend on
what else the CI machine runs). How well two runs agree is measured by
benchmarks/latency_repeatability.py (README, "Benchmarks").
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "reports" / "default"


def committed_latencies() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((SNAPSHOT / "latency").rglob("*.json"))]


def test_every_architecture_of_the_default_grid_was_timed_with_the_configs_protocol():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    expected = {("none", 0)} | {(strategy, k) for strategy in config["strategies"] for k in config["k"]}
    records = committed_latencies()
    assert {(r["architecture"]["strategy"], r["architecture"]["k"]) for r in records} == expected
    for record in records:
        protocol = record["protocol"]
        assert {key: protocol[key] for key in config["evaluation"]["latency"]} == config["evaluation"]["latency"]
        assert protocol["clock"] == "thread_time" and protocol["threads"] == 1


def test_fewer_layers_take_less_time():
    by_depth = defaultdict(list)
    for record in committed_latencies():
        by_depth[record["num_layers"]].append(record["latency_ms"])
    depths = sorted(by_depth)
    assert len(depths) == 3  # 2, 4 and 6 layers
    for fewer, more in zip(depths, depths[1:]):
        assert max(by_depth[fewer]) < min(by_depth[more])


def test_architectures_of_equal_depth_got_latencies_within_5_percent():
    """Issue 13: the figures every cell carries (results/summary.csv), one per architecture."""
    summary = pd.read_csv(SNAPSHOT / "summary.csv")
    per_architecture = summary.groupby(["strategy", "k", "layers_kept"], as_index=False)[["latency_ms", "latency_relative"]].agg("nunique")
    assert (per_architecture[["latency_ms", "latency_relative"]] == 1).all().all()  # every cell copies its architecture's
    figures = summary.drop_duplicates(["strategy", "k"]).groupby("layers_kept")["latency_ms"]
    assert sorted(figures.groups) == [2, 4, 6]
    for depth, values in figures:
        assert values.max() / values.min() - 1 <= 0.05, (depth, list(values))


def test_pruned_architectures_are_expressed_in_the_full_models_lowest_timing():
    records = {(r["architecture"]["strategy"], r["architecture"]["k"]): r for r in committed_latencies()}
    full = min([records[("none", 0)]["latency_ms"]] + [r["full_latency_ms_beside"] for key, r in records.items() if key[1]])
    summary = pd.read_csv(SNAPSHOT / "summary.csv").drop_duplicates(["strategy", "k"]).set_index(["strategy", "k"])
    for (strategy, k), record in records.items():
        relative = record.get("relative_to_full", 1.0)
        assert summary.loc[(strategy, k), "latency_relative"] == pytest.approx(relative)
        assert summary.loc[(strategy, k), "latency_ms"] == pytest.approx(relative * full)


def test_every_cell_of_the_default_run_is_fitted_or_flagged_and_used_the_configs_head():
    """Issue 22: the committed run records each cell's convergence, with the head the config asks for, and the
    table marks exactly the entries with an underfit seed."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    summary = pd.read_csv(SNAPSHOT / "summary.csv")
    scores = summary[summary["metric"] == "task_score"]
    assert scores["train_fit"].notna().all() and scores["dev_fit"].notna().all()
    assert set(scores["head"]) == {config["models"]["minilm_l6"]["head"]}
    assert (scores["underfit"] == (scores["train_fit"] > 0.5)).all()
    flagged = scores.groupby(["strategy", "k", "task"])["underfit"].any()
    table = (SNAPSHOT / "minilm_l6.md").read_text().split("### Every official metric")[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 5 or cells[0] not in {"none", "top", "bottom"}:
            continue
        strategy, k = cells[0], int(cells[1])
        for task, text in zip(("sst2", "stsb"), cells[3:5]):
            assert ("\u00b0" in text) == bool(flagged[(strategy, k, task)]), (strategy, k, task, text)
