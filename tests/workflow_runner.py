"""Run the real Snakefile in a scratch directory and read what it planned."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None,
              snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "-s", str(snakefile), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), *args]
    run_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, env=run_env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


# Rules left out of planned_jobs unless asked for: a model card (rule model_card, one per cell) is rewritten
# whenever results/stats.csv is, so it would join every plan; tests/test_model_card.py counts them.
IGNORED_RULES = ("model_card",)


def planned_jobs(workdir: Path, *args: str, env: dict | None = None, ignore=IGNORED_RULES,
                 snakefile: Path = REPO / "Snakefile") -> dict[str, int]:
    """Jobs per rule that a dry run would execute (empty when nothing is to be done), without the rules in
    ``ignore``."""
    result = snakemake(workdir, "-n", *args, env=env, snakefile=snakefile)
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    stats = text.split("Job stats:", 1)[1]
    counts = {}
    for line in stats.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if match and match.group(1) != "total" and match.group(1) not in ignore:
            counts[match.group(1)] = int(match.group(2))
        if line.strip().startswith("total"):
            break
    return counts


def finished_tiny_run(workdir: Path, strategies=("top",), k=(1,), relative_paths: bool = False, layers: int = 4) -> dict:
    """Run the tiny model (``tiny.tiny_config``, ``layers`` deep) on SST-2 alone through the whole workflow;
    returns its config. ``relative_paths``: the model and data paths relative to ``workdir`` (so a copy of it is
    a finished run)."""
    from tiny import tiny_config, write_config

    config = tiny_config(workdir, strategies=strategies, k=k, layers=layers)
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    if relative_paths:
        for source in (config["models"]["tiny"]["source"], config["tasks"]["sst2"]["source"]):
            source["path"] = str(Path(source["path"]).relative_to(workdir))
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2")
    return config


def planned_params(workdir: Path, *configfiles: Path) -> list[dict[str, list[str]]]:
    """For each of ``configfiles``, the params of every job it plans in ``workdir`` (forced: as if nothing
    existed), per rule, as Snakemake compares them (``tests/plan_params.py``, all in one process)."""
    command = [sys.executable, str(REPO / "tests" / "plan_params.py"), str(REPO), str(workdir), *map(str, configfiles)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("PARAMS ")]
    if result.returncode != 0 or len(lines) != len(configfiles):
        raise AssertionError(f"planning {configfiles} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return [json.loads(line.removeprefix("PARAMS ")) for line in lines]
