"""The committed default run (reports/default/) is what config/config.yaml produces, and its latencies
are a property of the architecture: equal depth, latency within 5% (issue 13 item 3).

Reads committed files only; nothing is timed here (a timing taken inside the suite would depend on
what else the CI machine runs). benchmarks/latency_repeatability.py re-measures the agreement.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

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


def test_architectures_of_equal_depth_have_latencies_within_5_percent():
    by_depth = defaultdict(dict)
    for record in committed_latencies():
        by_depth[record["num_layers"]][f"{record['architecture']['strategy']}-k{record['architecture']['k']}"] = record["latency_ms"]
    groups = {depth: figures for depth, figures in by_depth.items() if len(figures) > 1}
    assert groups  # the default grid has two strategies at each k
    for depth, figures in groups.items():
        assert max(figures.values()) <= 1.05 * min(figures.values()), (depth, figures)
    depths = sorted(by_depth)
    fastest = [min(by_depth[d].values()) for d in depths]
    assert fastest == sorted(fastest)  # fewer layers, less time
