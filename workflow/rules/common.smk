import os
import sys
from pathlib import Path

from snakemake.utils import validate

# The scripts import the dropbench package from src/; jobs inherit this environment.
SRC = str(Path(workflow.current_basedir).parents[1] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)


validate(config, "../schemas/config.schema.yaml")

from dropbench import config_check, grid  # noqa: E402

config_check.check(config)
CELLS = grid.cells(config)
STRATEGIES_NEEDING_DATA = set(config_check.data_driven(config))


wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    strategy=r"[a-z0-9_]+",
    k=r"\d+",
    task=r"[a-z0-9_]+",
    seed=r"\d+",
    scope=r"[a-z0-9_]+",


def prune_scope(strategy, task):
    return task if strategy in STRATEGIES_NEEDING_DATA else "any"


def cell_model_dir(wildcards):
    """The encoder a cell fine-tunes: the pre-trained one for the baseline, else its pruned copy."""
    if wildcards.strategy == grid.BASELINE:
        return grid.pretrained_dir(wildcards.model)
    scope = prune_scope(wildcards.strategy, wildcards.task)
    return grid.pruned_dir(wildcards.model, wildcards.strategy, int(wildcards.k), scope)


def prune_inputs(wildcards):
    inputs = {"model": grid.pretrained_dir(wildcards.model)}
    if wildcards.scope != "any":
        inputs["features"] = grid.features_dir(wildcards.model, wildcards.scope)
    return inputs


def task_source(wildcards):
    return config["tasks"][wildcards.task]["source"]


def cell_params(wildcards):
    return {
        "model": wildcards.model,
        "strategy": wildcards.strategy,
        "k": int(wildcards.k),
        "task": wildcards.task,
        "seed": int(wildcards.seed),
    }


def metrics_files():
    return [cell.metrics for cell in CELLS]


def report_outputs():
    return [
        "reports/tables/summary_wide.md",
        "reports/figures/score_vs_dropped.png",
    ]


def all_outputs():
    return metrics_files() + ["results/summary.csv"] + report_outputs()
