"""What profiles/slurm asks SLURM for per fine-tune: a whole GPU, or GPU shards (no cluster needed)."""

from __future__ import annotations

import re

import pytest
from snakemake.profiles import ProfileConfigFileParser
from tiny import tiny_config, write_config
from workflow_runner import REPO, snakemake

PROFILE = REPO / "profiles" / "slurm"
SHARDS_ENV = "DROPBENCH_SLURM_GPU_SHARDS"


FINE_TUNES = ("finetune", "frozen_finetune", "iterative_finetune")  # the families' fine-tunes too


def parsed_profile(monkeypatch, value: str | None) -> dict:
    monkeypatch.delenv(SHARDS_ENV, raising=False)
    if value is not None:
        monkeypatch.setenv(SHARDS_ENV, value)
    with open(PROFILE / "config.yaml") as profile:
        return ProfileConfigFileParser().parse(profile)


def rule_resources(settings: dict, rule: str) -> dict[str, str]:
    pairs = [entry.split(":", 1)[1] for entry in settings["set-resources"] if entry.startswith(f"{rule}:")]
    return dict(pair.split("=", 1) for pair in pairs)


def finetune_resources(monkeypatch, value: str | None) -> dict[str, str]:
    return rule_resources(parsed_profile(monkeypatch, value), "finetune")


@pytest.mark.parametrize("value", [None, "", " "])
def test_by_default_each_fine_tune_asks_for_one_whole_gpu(monkeypatch, value):
    resources = finetune_resources(monkeypatch, value)
    assert resources["gpu"] == "1" and "gres" not in resources
    assert resources["slurm_partition"] == "gpu"


def test_with_shards_each_fine_tune_asks_for_that_many_shards_and_no_whole_gpu(monkeypatch):
    resources = finetune_resources(monkeypatch, "3")
    assert (resources["gpu"], resources["gres"]) == ("0", "shard:3")
    assert resources["slurm_partition"] == "gpu"  # only the GPU request differs
    assert resources["mem_mb"] == "16000 * attempt" and resources["runtime"] == "240 * attempt"


@pytest.mark.parametrize("value", [None, "2"])
def test_the_strategy_families_fine_tunes_ask_for_what_finetune_asks_for(monkeypatch, value):
    settings = parsed_profile(monkeypatch, value)
    for rule in FINE_TUNES:
        assert rule_resources(settings, rule) == rule_resources(settings, "finetune"), rule
        assert f"{rule}=4" in settings["set-threads"], rule


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_shard_count_is_refused_naming_it(monkeypatch, value):
    with pytest.raises(Exception, match=rf"DROPBENCH_SLURM_GPU_SHARDS='{re.escape(value)}'.*whole number >= 1"):
        finetune_resources(monkeypatch, value)


def test_the_planned_fine_tunes_ask_for_shards_and_the_other_jobs_for_no_gpu(tmp_path):
    """A dry run through the SLURM profile: the resources each planned job will be submitted with."""
    config = tiny_config(tmp_path, strategies=("top",), k=(2,))
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", "--profile", str(PROFILE), "--workflow-profile", "none",
                       env={SHARDS_ENV: "2"})
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout + result.stderr, re.M)
    finetunes = [resources for rule, resources in jobs if rule == "finetune"]
    assert len(finetunes) == 2  # the baseline and top-k2
    for resources in finetunes:
        assert "gres=shard:2" in resources and "gpu=0" in resources, resources
    others = [resources for rule, resources in jobs if rule != "finetune"]
    assert others and not any("gres=" in resources or "gpu=1" in resources for resources in others)
