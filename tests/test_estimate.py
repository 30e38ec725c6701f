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
    result = estimate.estimate(load("config.yaml"), "a100", 0.02, REPO)
    # baseline + 3 strategies x 2 k, on sst2/mrpc/stsb capped at 800/500/600 rows, 2 epochs
    assert result["cells"] == 7 * 3
    assert result["training_tokens"] == 7 * 2 * (800 * 13 + 500 * 53 + 600 * 31)
    # MiniLM: 6 layers of hidden 384; k=2 and k=4 keep 4 and 2 layers
    layer = 12 * 384**2
    per_task_layers = 6 + 3 * (4 + 2)
    expected_flops = 6 * 2 * layer * per_task_layers * (800 * 13 + 500 * 53 + 600 * 31)
    assert result["training_flops"] == pytest.approx(expected_flops)


def test_paper_grid_uses_official_glue_sizes_and_scales_with_the_flop_rate():
    config = load("paper.yaml")
    slow = estimate.estimate(config, "a100", 0.02)
    fast = estimate.estimate(config, "h100", 0.04)
    assert slow["cells"] == (3 * (1 + 6 * 3) + 1) * 8  # three pruned models, DistilBERT as baseline only
    assert slow["training_tokens"] == fast["training_tokens"] > 3 * 392702 * 39  # MNLI alone for one cell
    assert slow["gpu_hours"] == pytest.approx(fast["gpu_hours"] * (989 * 0.04) / (312 * 0.02))
    assert slow["checkpoint_gb"] > 100  # 464 fine-tuned models of up to 110M parameters


def test_cli_prints_the_estimate_and_rejects_unknown_gpus(capsys):
    assert estimate.main(["estimate", "--configfile", str(REPO / "config" / "config.yaml"), "--directory", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert "cells:                21" in out and "GPU-hours (a100)" in out
    assert estimate.main(["estimate", "--configfile", str(REPO / "config" / "config.yaml"), "--gpu", "k80"]) == 2
    assert "--gpu 'k80' unknown; allowed: a10, a100" in capsys.readouterr().err


def test_console_entry_point_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dropbench"] == "dropbench.estimate:main"
