"""`dropbench estimate`: cells, tokens, GPU-hours and disk of a config, from the config alone."""

from __future__ import annotations

import tomllib

import pytest
import yaml
from tiny import REPO

from dropbench.plan import estimate


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


def test_the_paper_grid_figures_in_config_readme_are_the_estimates():
    """Issue 24 item 5: config/README.md quoted 536 cells and 144 A100-hours where the estimate said 608 and 163.8."""
    import re

    text = " ".join((REPO / "config" / "README.md").read_text().split())
    found = re.search(r"the (\d+) family cells \(of (\d+)\) raise the estimate from ([\d.]+) to ([\d.]+) A100-hours", text)
    assert found, "config/README.md no longer quotes the paper grid's estimate"
    family, cells, without, with_families = int(found[1]), int(found[2]), float(found[3]), float(found[4])
    config = load("paper.yaml")
    full = estimate.estimate(config, "a100", 0.02)
    plain = {**config, "strategies": [s for s in config["strategies"] if s not in config["strategy_k"]]}
    del plain["strategy_k"]
    reduced = estimate.estimate(plain, "a100", 0.02)
    assert (cells, family) == (full["cells"], full["cells"] - reduced["cells"])
    assert (without, with_families) == (round(reduced["gpu_hours"], 1), round(full["gpu_hours"], 1))


def test_cli_prints_the_estimate_and_rejects_unknown_gpus(capsys):
    assert estimate.main(["estimate", "--configfile", str(REPO / "config" / "config.yaml"), "--directory", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert "cells:                30" in out and "GPU-hours (a100)" in out  # (1 + 2 x 2) variants x 2 tasks x 3 seeds
    assert estimate.main(["estimate", "--configfile", str(REPO / "config" / "config.yaml"), "--gpu", "k80"]) == 2
    assert "--gpu 'k80' unknown; allowed: a10, a100" in capsys.readouterr().err


def test_console_entry_point_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dropbench"] == "dropbench.plan.estimate:main"


# ------------------------------------------------------------------ the workflow's checks (issue 24 item 4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The suite's tiny config (a local 4-layer BERT) written to a file, and its directory."""
    from tiny import tiny_config, write_config

    workdir = tmp_path_factory.mktemp("estimate_checks")
    return workdir, tiny_config(workdir, strategies=("top",), k=(1, 2)), write_config


def refused(capsys, path, directory, *fragments):
    assert estimate.main(["estimate", "--configfile", str(path), "--directory", str(directory)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in captured.err, f"{fragment!r} not in {captured.err!r}"


def test_estimate_refuses_what_the_workflow_refuses_with_the_same_message(tiny, capsys, tmp_path):
    from tiny import changed

    workdir, config, write_config = tiny
    # a misspelt section was priced at the default 3 epochs
    write_config(tmp_path, changed(config, "trainng", {"epochs": 30}))
    refused(capsys, tmp_path / "config.yaml", workdir, "unknown config key(s): 'trainng' (did you mean 'training'?")
    # k beyond the depth of the 4-layer model printed negative FLOPs, GPU-hours and disk
    write_config(tmp_path, changed(config, "k", [9]))
    refused(capsys, tmp_path / "config.yaml", workdir, "config key 'k': bad value 9; allowed: 1..3 (model 'tiny' has 4 layers)")
    write_config(tmp_path, changed(config, "training.epochs", "thirty"))
    refused(capsys, tmp_path / "config.yaml", workdir, "config key 'training.epochs': 'thirty' is not of type 'number'")


@pytest.mark.parametrize("text, fragment", [
    ("", "empty; expected a mapping of config keys"),
    ("# only a comment\n", "empty; expected a mapping of config keys"),
    ("- a\n- b\n", "expected a mapping of config keys (models, tasks, ...), found a list"),
    ("models: {tiny: [\n", "not valid YAML ("),
    ("models:\n\tk: 1\n", "not valid YAML ("),
])
def test_an_empty_or_broken_config_file_is_one_line_naming_the_file(capsys, tmp_path, text, fragment):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    refused(capsys, path, tmp_path, f"dropbench estimate: config file {path}: ", fragment)
    refused(capsys, tmp_path / "absent.yaml", tmp_path, f"config file {tmp_path / 'absent.yaml'}: cannot read it")


def test_several_config_files_merge_as_snakemakes_do(tiny, capsys, tmp_path):
    workdir, config, write_config = tiny
    base = write_config(tmp_path, config)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("k: [9]\ntraining: {epochs: 2}\n")
    merged = estimate.config_files.merge_config_files([base, overlay])
    assert merged["k"] == [9] and merged["training"] == {**config["training"], "epochs": 2}
    assert estimate.main(["estimate", "--configfile", str(base), str(overlay), "--directory", str(workdir)]) == 2
    assert "config key 'k': bad value 9" in capsys.readouterr().err
