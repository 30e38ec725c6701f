"""Greedy layer search (strategy ``greedy``, dropbench.prune.greedy; issue 25 item 3): the candidates, the choice on
held-out train rows only, the config checks and, through the real Snakefile, the checkpoint path (a search stopped
after step 1 resumes, a finished one plans nothing, candidates shared with the exhaustive subsets train once)."""

from __future__ import annotations

import copy
import json

import pytest
from tiny import REPO, build_tiny_bert, tiny_config, write_config
from workflow_runner import planned_jobs, snakemake

from dropbench.plan import config_check, job_params
from dropbench.prune import greedy, strategies
from dropbench.plan.config_check import ConfigError

PARAMS = {"model": "m", "task": "sst2", "seed": 1, "depth": 4}


def record(strategy: str, k: int, held_out: float | None, dev: float = 0.5, seed: int = 1) -> dict:
    """A candidate's metrics.json as choose_step reads it."""
    out = {"model": "m", "strategy": strategy, "k": k, "task": "sst2", "seed": seed,
           "metrics": {"accuracy": dev}, "task_score": dev}
    if held_out is not None:
        out["held_out"] = {"metrics": {"accuracy": held_out}, "task_score": held_out}
    return out


def test_the_candidates_add_each_remaining_layer_to_the_order():
    assert [c.name for c in greedy.candidate_cells("m", "sst2", 1, [], 3)] == [
        "m/layer1-k1/sst2/seed1", "m/layer2-k1/sst2/seed1", "m/layer3-k1/sst2/seed1"]
    assert [c.strategy for c in greedy.candidate_cells("m", "sst2", 1, [4, 1], 4)] == ["drop_1_2_4", "drop_1_3_4"]
    assert {c.k for c in greedy.candidate_cells("m", "sst2", 1, [4, 1], 4)} == {3}
    with pytest.raises(ValueError, match="at most 3 can be"):
        greedy.candidate_cells("m", "sst2", 1, [1, 2, 3], 4)


def test_the_best_held_out_score_is_kept_ties_to_the_lower_layer():
    step = greedy.choose_step([3], [record("drop_1_3", 2, 0.6), record("drop_2_3", 2, 0.8), record("drop_3_4", 2, 0.8)],
                              {**PARAMS, "step": 2})
    assert step["order"] == [3, 2] and step["chosen"] == "drop_2_3" and step["added"] == 2
    assert step["chosen_on"] == "held_out" and step["held_out_task_score"] == 0.8
    assert [c["cell"] for c in step["candidates"]] == ["m/drop_1_3-k2/sst2/seed1", "m/drop_2_3-k2/sst2/seed1", "m/drop_3_4-k2/sst2/seed1"]


def test_poisoned_dev_scores_change_no_choice():
    """Every selection reads the held-out rows only: dev scores turned upside down choose the same layers."""
    held_out = {"layer1": 0.7, "layer2": 0.9, "layer3": 0.6, "layer4": 0.8}
    honest = [record(s, 1, h, dev=h) for s, h in held_out.items()]
    poisoned = [record(s, 1, h, dev=1 - h) for s, h in held_out.items()]
    chosen = [greedy.choose_step([], candidates, {**PARAMS, "step": 1})["order"] for candidates in (honest, poisoned)]
    assert chosen[0] == chosen[1] == [2]


def test_a_choice_without_held_out_scores_or_with_the_wrong_candidates_is_refused():
    with pytest.raises(ValueError, match="tuning.held_out"):
        greedy.choose_step([], [record(f"layer{i}", 1, None) for i in range(1, 5)], {**PARAMS, "step": 1})
    with pytest.raises(ValueError, match=r"needs the candidates \['layer1', 'layer2', 'layer3', 'layer4'\]"):
        greedy.choose_step([], [record(f"layer{i}", 1, 0.5) for i in range(1, 4)], {**PARAMS, "step": 1})
    with pytest.raises(ValueError, match="not a candidate of greedy step 2"):  # a cell of another seed
        greedy.choose_step([1], [record("drop_1_2", 2, 0.5, seed=2)], {**PARAMS, "step": 2})


def test_the_strategy_drops_the_first_k_layers_of_the_search_order():
    assert strategies.layers_to_drop("greedy", 6, 2, {"greedy_order": [6, 2, 4]}) == [1, 5]
    with pytest.raises(ValueError, match="context\\['greedy_order'\\]"):
        strategies.layers_to_drop("greedy", 6, 2)
    with pytest.raises(ValueError, match="has only 1 layers"):
        strategies.layers_to_drop("greedy", 6, 2, {"greedy_order": [6]})
    assert job_params.prune_params("greedy", 2, 6, {"seed": 0}, [6, 2, 4])["dropped"] == [1, 5]
    for family in ("task_specific_greedy", "iterative_greedy"):
        assert not strategies.is_known(family)


def checked(config: dict) -> dict:
    config = copy.deepcopy(config)
    config_check.load_and_check(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    return config


def test_greedy_needs_held_out_rows_and_known_depths(tmp_path):
    config = tiny_config(tmp_path, strategies=("greedy",), k=(2,))
    with pytest.raises(ConfigError, match=r"'strategies': bad value 'greedy'.*tuning.held_out"):
        checked(config)
    config["tuning"] = {"learning_rates": [1e-3], "held_out": 12}
    assert "greedy" in config_check.data_driven(checked(config))  # its pruned models are per task
    config["models"]["tiny"] = {"source": {"kind": "hub", "repo_id": "org/name", "revision": "0" * 40}}
    with pytest.raises(ConfigError, match=r"'models.tiny.num_layers'.*greedy search"):
        checked(config)


@pytest.mark.slow
def test_the_search_resumes_plans_nothing_once_done_and_shares_cells_with_the_subsets(tmp_path):
    """A 3-layer tiny model, greedy to k = 2 on SST-2: step 1 alone (a stopped search), then the rest, then the
    exhaustive k = 1 subsets beside it, then poisoned dev labels."""
    config = tiny_config(tmp_path, strategies=("greedy",), k=(2,))
    config["models"]["tiny"] = {"source": {"kind": "local", "path": str(build_tiny_bert(tmp_path / "tiny3", layers=3))},
                                "num_layers": 3}
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    config["tuning"] = {"learning_rates": [1.0e-3], "held_out": 12}
    write_config(tmp_path, config)
    cell = "results/cells/tiny/greedy-k2/sst2/seed1/metrics.json"  # the search and its cell, no report yet
    plan = planned_jobs(tmp_path, cell)
    assert plan["greedy_step"] == 2 and plan["finetune"] == 3 + 1  # step 1's three candidates, greedy-k2
    # one learning-rate candidate: the rate is fixed, each variant's choice is recorded without a selection fine-tune
    assert "tune_learning_rate" not in plan and plan["choose_learning_rate"] == 3 + 1

    snakemake(tmp_path, "--cores", "2", "results/greedy/tiny/sst2/step1.json")
    step1 = json.loads((tmp_path / "results/greedy/tiny/sst2/step1.json").read_text())
    assert [c["strategy"] for c in step1["candidates"]] == ["layer1", "layer2", "layer3"] and len(step1["order"]) == 1
    best = max(c["held_out_task_score"] for c in step1["candidates"])
    assert step1["held_out_task_score"] == best
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "results/cells").rglob("metrics.json")}
    assert len(first) == 3  # the candidates only
    for path in first:  # trained at the fixed rate, not training.learning_rate
        assert json.loads(path.read_text())["tuning"] == {"candidates": {"0.001": None}, "chosen": 1e-3, "held_out_rows": 12,
                                                          "seed": 0, "fixed": True}
        assert json.loads((path.parent / "train_log.json").read_text())["config"]["learning_rate"] == 1e-3

    plan = planned_jobs(tmp_path, cell)  # the resumed search: step 2's two candidates and greedy-k2
    assert plan["greedy_step"] == 1 and plan["finetune"] == 2 + 1
    snakemake(tmp_path, "--cores", "2", cell)
    assert planned_jobs(tmp_path, cell) == {}
    assert {p: p.stat().st_mtime_ns for p in first} == first  # no candidate of step 1 trained again
    step2 = json.loads((tmp_path / "results/greedy/tiny/sst2/step2.json").read_text())
    assert step2["previous_order"] == step1["order"] and len(step2["candidates"]) == 2
    assert all(step1["order"][0] in c["dropped"] for c in step2["candidates"])
    pruning = json.loads((tmp_path / "results/models/tiny/pruned/greedy-k2/sst2/pruning.json").read_text())
    assert pruning["dropped"] == sorted(layer - 1 for layer in step2["order"])
    assert pruning["search_record"] == "results/greedy/tiny/sst2/step2.json"

    # the exhaustive k = 1 subsets are step 1's candidates: the same cells, so the whole grid trains only the
    # baseline (no search step, no prune, no candidate again), then plans nothing
    config["subsets"] = {"models": ["tiny"], "k": [1]}
    write_config(tmp_path, config)
    plan = planned_jobs(tmp_path)
    assert plan["finetune"] == plan["evaluate"] == 1 and not {"prune", "greedy_step"} & set(plan) and plan["oracle"] == 1
    snakemake(tmp_path, "--cores", "2")
    assert planned_jobs(tmp_path) == {}
    assert "## Greedy search: tiny, sst2 (seed 1, chosen on held-out train rows)" in (tmp_path / "reports/oracle.md").read_text()
    assert not (tmp_path / "reports/sensitivity.md").exists()  # one learning rate: nothing to compare
    rows = [line.split(",") for line in (tmp_path / "reports/tuning.csv").read_text().splitlines()[1:]]
    assert {row[1] for row in rows} == {"none", "layer1", "layer2", "layer3", "greedy"}  # the grid's variants
    assert all(row[4:] == ["0.001", "", "True", "12", "0", "False"] for row in rows)  # each at the fixed rate, no score

    # poisoned dev labels (all one class): the task is prepared and every candidate trained again, and every step
    # chooses exactly as before, on exactly the same held-out scores (the search never reads the dev rows)
    records = [tmp_path / f"results/greedy/tiny/sst2/step{s}.json" for s in (1, 2)]
    before = [json.loads(path.read_text()) for path in records]
    dev = tmp_path / "glue/SST-2/dev.tsv"
    header, *lines = dev.read_text().splitlines(keepends=True)
    assert {line.rstrip("\n").rsplit("\t", 1)[1] for line in lines} == {"0", "1"}
    dev.write_text(header + "".join(line.rstrip("\n").rsplit("\t", 1)[0] + "\t1\n" for line in lines))
    snakemake(tmp_path, "--cores", "2", str(records[-1].relative_to(tmp_path)))
    assert records[0].stat().st_mtime_ns > max(first.values())  # the search did run again
    assert [json.loads(path.read_text()) for path in records] == before


def test_the_estimate_counts_the_search_candidates_beyond_the_subsets():
    import yaml

    from dropbench.plan import estimate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(strategies=["greedy"], k=[2, 4], tuning={"learning_rates": [2e-4], "held_out": 100})
    tasks = len(config["tasks"])
    searched = estimate.estimate(copy.deepcopy(config), "a100", 0.02, REPO)
    assert searched["greedy_search_fine_tunes"] == (6 + 5 + 4 + 3) * tasks  # MiniLM's 6 layers, to k = 4
    shared = estimate.estimate({**copy.deepcopy(config), "subsets": {"models": True, "k": [2, 4]}}, "a100", 0.02, REPO)
    assert shared["greedy_search_fine_tunes"] == (6 + 4) * tasks  # steps 2 and 4 are the subsets' own cells
    plain = estimate.estimate({**copy.deepcopy(config), "strategies": ["top"]}, "a100", 0.02, REPO)
    assert "greedy_search_fine_tunes" not in plain and searched["gpu_hours"] > plain["gpu_hours"]
