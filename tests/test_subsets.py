"""Every subset of a model's layers as ordinary cells (config ``subsets``, issue 25 item 2): names, the
grid, the config checks, the estimate and, through the real Snakefile, exact planning when a k is added."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
from conftest import copy_of_base_run
from tiny import REPO, tiny_config, write_config
from workflow_runner import planned_jobs, snakemake

from dropbench.plan import config_check, estimate, grid
from dropbench.prune import strategies, strategy_names
from dropbench.plan.config_check import ConfigError


def test_a_subset_is_named_by_the_layers_it_drops_one_based():
    assert strategy_names.subset_name([4, 1]) == "drop_1_4" and strategy_names.subset_name([3]) == "layer3"
    assert strategy_names.subset_layers("drop_1_4") == (1, 4) and strategy_names.subset_layers("layer3") == (3,)
    assert strategies.layers_to_drop("drop_1_4", 6, 2) == [0, 3]
    assert strategies.layers_to_drop("drop_2_3_6", 6, 3) == [1, 2, 5]
    for name in ("drop_4_1", "drop_1_1", "drop_1", "drop_0_2", "drop_1_x"):  # not ascending, one layer, 0-based, junk
        assert strategy_names.subset_layers(name) is None and not strategies.is_known(name), name
    with pytest.raises(ValueError, match=r"'drop_1_4' drops exactly 2 layer\(s\): k must be 2, got 3"):
        strategies.layers_to_drop("drop_1_4", 6, 3)
    with pytest.raises(ValueError, match=r"'drop_1_7': a 6-layer model has layers 1\.\.6"):
        strategies.layers_to_drop("drop_1_7", 6, 2)


def subset_config(ks=(2,), **extra) -> dict:
    return {"models": {"m": {"source": {}, "num_layers": 4}, "ref": {"source": {}, "prune": False, "num_layers": 4}},
            "strategies": ["top"], "k": [2], "tasks": {"sst2": {}}, "seeds": [1, 2],
            "subsets": {"models": ["m"], "k": list(ks)}, **extra}


def test_every_subset_of_each_k_is_one_variant_and_the_heuristics_stay():
    cells = grid.cells(subset_config(ks=(1, 2)))
    variants = sorted({(c.strategy, c.k) for c in cells if c.model == "m"})
    subsets = [v for v in variants if strategy_names.subset_layers(v[0])]
    assert len([v for v in subsets if v[1] == 1]) == math.comb(4, 1) and len([v for v in subsets if v[1] == 2]) == math.comb(4, 2)
    assert ("top", 2) in variants and ("none", 0) in variants and ("layer2", 1) in variants and ("drop_2_4", 2) in variants
    assert {(c.strategy, c.k) for c in cells if c.model == "ref"} == {("none", 0)}
    assert len(cells) == (1 + 1 + 4 + 6 + 1) * 2  # m: none, top-2, 4 + 6 subsets; ref: none; two seeds
    # k = 1 subsets are the layer profile's cells: both keys together plan each once
    both = grid.cells(subset_config(ks=(1,), layer_profile=["m"]))
    assert len(both) == len(set(both)) == (1 + 1 + 4 + 1) * 2


def test_the_estimate_counts_the_subsets():
    config = yaml_config()
    plain = estimate.estimate({k: v for k, v in config.items() if k != "subsets"}, "a100", 0.02, REPO)
    with_subsets = estimate.estimate(config, "a100", 0.02, REPO)
    subsets = math.comb(6, 2) + math.comb(6, 4)  # MiniLM's 6 layers; top and bottom keep their own names
    per_variant = len(config["tasks"]) * len(config["seeds"])
    assert with_subsets["cells"] - plain["cells"] == subsets * per_variant


def yaml_config() -> dict:
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["subsets"] = {"models": True, "k": [2, 4]}
    return config


@pytest.mark.parametrize("subsets, fragments", [
    ({"models": ["m"], "k": [4]}, ["'subsets.k'", "bad value 4", "1..3"]),
    ({"models": ["m"], "k": [0]}, ["'subsets.k'", "1..3"]),
    ({"models": ["ref"], "k": [2]}, ["'subsets.models'", "'ref'", "prune: true"]),
    ({"models": ["m", "m"], "k": [2]}, ["'subsets.models'"]),
    ({"models": ["m"], "k": [2, 2]}, ["'subsets.k'"]),
])
def test_bad_subsets_are_refused_naming_the_value(tmp_path, subsets, fragments):
    config = tiny_config(tmp_path, strategies=("top",), k=(1,))
    config["models"]["m"] = copy.deepcopy(config["models"].pop("tiny"))
    config["models"]["ref"] = {**copy.deepcopy(config["models"]["m"]), "prune": False}
    config["subsets"] = subsets
    with pytest.raises(ConfigError) as err:
        config_check.load_and_check(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_a_subset_name_in_strategies_is_refused(tmp_path):
    config = tiny_config(tmp_path, strategies=("drop_1_2",), k=(2,))
    with pytest.raises(ConfigError, match=r"cells of named subsets \(drop_1_2\) come from 'subsets'"):
        config_check.load_and_check(config, REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.mark.slow
def test_adding_a_k_runs_exactly_its_subsets(tmp_path, base_run_3_layers):
    """A finished 3-layer tiny grid (none, top-1): subsets at k = 1 added (three cells), then k = 2 (three more),
    nothing else."""
    config = copy_of_base_run(base_run_3_layers, tmp_path)
    config["subsets"] = {"models": ["tiny"], "k": [1]}
    write_config(tmp_path, config)
    plan = planned_jobs(tmp_path)
    assert plan["finetune"] == plan["evaluate"] == 3  # layer1..3 (none and top-1 are done)
    assert plan["oracle"] == 1
    snakemake(tmp_path, "--cores", "2")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results/cells").rglob("metrics.json")}
    assert len(before) == 5

    config["subsets"]["k"] = [1, 2]
    write_config(tmp_path, config)
    plan = planned_jobs(tmp_path)
    assert plan["finetune"] == plan["evaluate"] == plan["prune"] == plan["measure_latency"] == 3
    snakemake(tmp_path, "--cores", "2")
    assert planned_jobs(tmp_path) == {}
    assert {p: p.stat().st_mtime_ns for p in before} == before  # no existing cell re-ran
    summary = pd.read_csv(tmp_path / "results/summary.csv", dtype={"dropped_layers": str})
    scores = summary[summary["metric"] == "task_score"].set_index("strategy")
    assert scores.loc["drop_1_3", "dropped_layers"] == "0 2" and scores.loc["drop_2_3", "layers_kept"] == 1
    assert "drop_1_2" in (tmp_path / "reports/tables/tiny.md").read_text()
    # the oracle report (issue 25 item 4) ranks every subset of each k and places top among them, or, as the
    # tables do, withholds the (model, task) whose full model is at chance (a tiny random model may be)
    ranked = pd.read_csv(tmp_path / "reports/oracle_subsets.csv")
    report = (tmp_path / "reports/oracle.md").read_text()
    if "Withheld for tiny on sst2" in report:
        assert ranked.empty and pd.read_csv(tmp_path / "reports/oracle_heuristics.csv").empty
    else:
        assert sorted(ranked.loc[ranked["k"] == 2, "strategy"]) == ["drop_1_2", "drop_1_3", "drop_2_3"]
        top = pd.read_csv(tmp_path / "reports/oracle_heuristics.csv").set_index("strategy").loc["top"]
        assert top["same_as"] == "layer3" and top["of"] == 3 and 1 <= top["rank"] <= 3
        assert "optimistic" in report
    assert (tmp_path / "reports/figures/oracle.png").stat().st_size > 0
