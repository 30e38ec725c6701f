"""dropbench as a Snakemake module: a lab's own Snakefile, config and working directory (issue 26 item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import build_tiny_bert
from workflow_runner import REPO

from dropbench.data import tasks

pytestmark = pytest.mark.slow

LAB_SNAKEFILE = """\
configfile: "config/config.yaml"


module dropbench:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from dropbench
"""


def lab_snakemake(lab: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake`` run as a lab would: in its directory, on its own Snakefile, nothing else on the command line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=lab, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A directory holding only a module Snakefile and a tiny config: a tiny BERT kept elsewhere (an absolute
    path, the user's), SST-2 as the default config names it (resources/glue/SST-2: the workflow's shipped data)."""
    model = build_tiny_bert(tmp_path_factory.mktemp("weights") / "tiny")
    lab = tmp_path_factory.mktemp("lab")
    (lab / "Snakefile").write_text(LAB_SNAKEFILE.format(snakefile=REPO / "workflow" / "Snakefile"))
    config = {
        "models": {"tiny": {"source": {"kind": "local", "path": str(model)}, "num_layers": 4}},
        "strategies": ["top"],
        "k": [1],
        "tasks": {"sst2": {"source": {"kind": "local", "path": "resources/glue/SST-2"}, "max_train_examples": 16}},
        "seeds": [1],
        "training": {"epochs": 1, "batch_size": 8, "max_length": 32, "checkpoint_minutes": 0},
        "evaluation": {"batch_size": 64, "latency": {"batch_size": 2, "seq_len": 16, "warmup": 1, "repeats": 2, "agree": 1, "max_seconds": 1}},
        "resources": {"finetune": {"threads": 1}},
    }
    (lab / "config").mkdir()
    (lab / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return lab


def test_a_relative_data_path_is_the_users_else_the_workflows_shipped_copy(tmp_path):
    assert tasks.local_data_dir("resources/glue/SST-2", tmp_path) == REPO / "resources/glue/SST-2"
    (tmp_path / "resources/glue/SST-2").mkdir(parents=True)
    assert tasks.local_data_dir("resources/glue/SST-2", tmp_path) == tmp_path / "resources/glue/SST-2"
    assert tasks.local_data_dir("nowhere", tmp_path) == tmp_path / "nowhere"  # the error then names the user's path


def test_a_lab_snakefile_plans_and_runs_the_grid_in_its_own_directory(lab):
    before = sorted(path.name for path in lab.iterdir())
    dry = lab_snakemake(lab, "-n")
    assert sorted(path.name for path in lab.iterdir() if path.name != ".snakemake") == before  # a dry run writes nothing
    text = dry.stdout + dry.stderr
    for rule, count in (("finetune", 2), ("evaluate", 2), ("prune", 1), ("model_card", 2), ("prepare_task", 1)):
        assert f"\n{rule} " in text and any(line.split() == [rule, str(count)] for line in text.splitlines()), rule
    lab_snakemake(lab, "--cores", "2")
    for cell in ("none-k0", "top-k1"):
        assert (lab / f"results/cells/tiny/{cell}/sst2/seed1/metrics.json").is_file()
        assert (lab / f"results/cells/tiny/{cell}/sst2/seed1/publish/README.md").is_file()
    assert (lab / "results/summary.csv").is_file() and (lab / "reports/tables/tiny.md").is_file()
    assert (lab / "logs").is_dir() and not (REPO / "results/cells/tiny").exists()
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(lab_snakemake(lab, "-n"))
