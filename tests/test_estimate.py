"""`dropbench estimate`: cells, tokens, GPU-hours and disk of a config, from the config alone."""

from __future__ import annotations

import tomllib

import pytest
import yaml
from tiny import REPO

from dropbench import estimate


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


def test_default_config_counts_cells_and_tokens_from_the_shipped_rows():
    config = load("config.yaml")
    result = estimate.estimate(config, "a100", 0.02, REPO)
    rows = {task: cfg["max_train_examples"] for task, cfg in config["tasks"].items()}  # both below the shipped sizes
    seeds, epochs = len(config["seeds"]), config["training"]["epochs"]
    variants = 1 + len(config["strategies"]) * len(config["k"])
    assert result["cells"] == variants * len(rows) * seeds
    tokens_per_pass = sum(rows[task] * estimate.GLUE_MEAN_TOKENS[task] for task in rows)
    assert result["training_tokens"] == variants * seeds * epochs * tokens_per_pass
    # MiniLM: 6 layers of hidden 384; k=2 and k=4 keep 4 and 2 layers
    layer = 12 * 384**2
    kept_layers = 6 + len(config["strategies"]) * (4 + 2)
    assert result["training_flops"] == pytest.approx(6 * seeds * epochs * layer * kept_layers * tokens_per_pass)


def test_paper_grid_uses_official_glue_sizes_and_scales_with_the_flop_rate():
    config = load("paper.yaml")
    slow = estimate.estimate(config, "a100", 0.02)
    fast = estimate.estimate(config, "h100", 0.04)
    # three pruned models (6 strategies x 3 k, three [CLS] thresholds, task_specific_top at k=6,
    # iterative_top at k=4, 6), DistilBERT unpruned
    assert slow["cells"] == (3 * (1 + 6 * 3 + 3 + 1 + 2) + 1) * 8
    assert slow["training_tokens"] == fast["training_tokens"] > 3 * 392702 * 39  # MNLI alone for one cell
    assert slow["gpu_hours"] == pytest.approx(fast["gpu_hours"] * (989 * 0.04) / (312 * 0.02))
    assert slow["checkpoint_gb"] > 100  # 464 fine-tuned models of up to 110M parameters


def test_strategy_families_count_their_longer_training():
    config = load("config.yaml")
    config.update(strategies=["top", "task_specific_top", "iterative_top"], k=[4], tasks={"sst2": config["tasks"]["sst2"]}, seeds=[1])
    tokens = {}
    for strategy in config["strategies"]:
        alone = {**config, "strategies": [strategy]}
        tokens[strategy] = estimate.estimate(alone, "a100", 0.02, REPO)
    base = estimate.estimate({**config, "strategies": ["top"], "models": {m: {**c, "prune": False} for m, c in config["models"].items()}},
                             "a100", 0.02, REPO)
    per_pass = base["training_tokens"] / 3  # the baseline cell: 3 epochs
    layer_flops = base["training_flops"] / (3 * 6)  # per epoch and layer of the 6-layer MiniLM
    top, specific, iterative = (tokens[s]["training_tokens"] - base["training_tokens"] for s in config["strategies"])
    assert (top, specific, iterative) == (3 * per_pass, 6 * per_pass, (2 * 4 + 3) * per_pass)
    flops = {s: tokens[s]["training_flops"] - base["training_flops"] for s in config["strategies"]}
    assert flops["top"] == pytest.approx(3 * 2 * layer_flops)
    assert flops["task_specific_top"] == pytest.approx((3 * 6 + 3 * 2) * layer_flops)
    assert flops["iterative_top"] == pytest.approx((2 * (6 + 5 + 4 + 3) + 3 * 2) * layer_flops)


def test_cli_prints_the_estimate_and_rejects_unknown_gpus(capsys):
    assert estimate.main(["estimate", "--configfile", str(REPO / "config" / "config.yaml"), "--directory", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert "cells:                30" in out and "GPU-hours (a100)" in out  # (1 + 2 x 2) variants x 2 tasks x 3 seeds
    assert estimate.main(["estimate", "--configfile", str(REPO / "config" / "config.yaml"), "--gpu", "k80"]) == 2
    assert "--gpu 'k80' unknown; allowed: a10, a100" in capsys.readouterr().err


def test_console_entry_point_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dropbench"] == "dropbench.estimate:main"
