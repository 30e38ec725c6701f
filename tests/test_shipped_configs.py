"""The configs shipped in config/ plan from a fresh clone: nothing they read lies outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from workflow_runner import REPO, planned_jobs

from dropbench.plan import job_params

CONFIGS = sorted((REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda path: path.name)
def test_local_task_sources_ship_with_the_repo(config_file):
    config = yaml.safe_load(config_file.read_text())
    for task, task_cfg in config["tasks"].items():
        source = task_cfg["source"]
        if source["kind"] != "local":
            continue
        path = (REPO / source["path"]).resolve()
        assert REPO in path.parents, f"{config_file.name}: task {task} reads {source['path']}, outside the repository"
        assert any(path.glob("train.tsv*")), f"{config_file.name}: task {task}: no train file in {source['path']}"


def plan_shipped(tmp_path, name: str) -> dict:
    """Planned job counts of config/<name> in a scratch work directory with only the repo's resources:
    no ../shared next to it."""
    (tmp_path / "resources").symlink_to(REPO / "resources")
    (tmp_path / "config.yaml").write_text((REPO / "config" / name).read_text())
    assert not (tmp_path.parent / "shared").exists()
    return planned_jobs(tmp_path)


@pytest.mark.slow
def test_offline12_plans_without_anything_beside_the_repo(tmp_path):
    counts = plan_shipped(tmp_path, "offline12.yaml")
    assert counts["prepare_task"] == 2 * 5  # two models x five tasks
    assert counts["finetune"] == counts["evaluate"] > 100


@pytest.mark.slow
def test_offline12_cpu_plans_its_reduced_grid_without_anything_beside_the_repo(tmp_path):
    counts = plan_shipped(tmp_path, "offline12_cpu.yaml")
    # MPNet: none + top/bottom at k=6; MiniLM-L6 unpruned; two tasks, three seeds
    assert counts["prune"] == 2
    assert counts["finetune"] == counts["evaluate"] == (3 + 1) * 2 * 3
    assert counts["measure_latency"] == 4
    assert counts["prepare_task"] == 2 * 2


def test_offline12_cpu_fine_tunes_each_model_at_its_own_learning_rate():
    """MiniLM at its own rate (issue 22), MPNet at the config's: the rate is in each job's params."""
    config = yaml.safe_load((REPO / "config" / "offline12_cpu.yaml").read_text())
    training = config["training"]
    rates = {name: job_params.model_training(training, model)["learning_rate"] for name, model in config["models"].items()}
    assert rates == {"mpnet_base": 5.0e-5, "minilm_l6": 2.0e-4}


@pytest.mark.slow
def test_paper_plans_the_section_5_families(tmp_path):
    """task_specific_top at k=6 and iterative_top at k=4 and 6, for the three pruned models on eight tasks."""
    counts = plan_shipped(tmp_path, "paper.yaml")
    assert counts["frozen_finetune"] == 3 * 8 * 1  # models x tasks x k
    assert counts["iterative_finetune"] == 3 * 8 * 2
    # every other cell fine-tunes with `finetune`, task_specific cells (their second stage) and the
    # three [CLS] threshold cells too
    assert counts["finetune"] == counts["evaluate"] - counts["iterative_finetune"] == (3 * (1 + 6 * 3 + 1 + 3) + 1) * 8
    # per model: 5 data-free strategies x 3 k + the 3 family variants, + per task: contribution (3 k) and
    # the three thresholds
    assert counts["prune"] == 3 * (5 * 3 + 3 + (3 + 3) * 8)


# configs whose committed snapshot was made with the [CLS] head, kept so that the snapshot matches its config
NATIVE_SNAPSHOTS = {"layer_profile.yaml"}


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda path: path.name)
def test_sentence_embedding_checkpoints_get_the_mean_pooling_head(config_file):
    """The head that fits the checkpoint (README "Classifier head and convergence"), except where a committed
    snapshot says otherwise; the paper's raw checkpoints keep their own head."""
    config = yaml.safe_load(config_file.read_text())
    for name, model in config["models"].items():
        sentence_embedding = re.search(r"sentence[- ]embedding", model.get("note", "")) is not None  # what every result says
        head = model.get("head", "native")
        if config_file.name == "head_comparison.yaml" or config_file.name in NATIVE_SNAPSHOTS:
            continue
        assert head == ("mean_pooling" if sentence_embedding else "native"), f"{config_file.name}: model {name}"
