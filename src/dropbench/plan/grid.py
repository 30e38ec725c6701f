"""The grid of cells a config asks for: (model, strategy, k, task, seed), with the baseline once.

Everything path-shaped lives here (a cell's own paths in dropbench.plan.cells) so the Snakefile, the steps and
the tests agree on it.
"""

from __future__ import annotations

import itertools

from dropbench.prune import strategy_names
from dropbench.plan.cells import (  # noqa: F401 (the grid's cells and their paths: grid.Cell, grid.CELL_DIR, ...)
    BASELINE, CELL_DIR, CELL_KEYS, CELL_NAME, CELLS_ROOT, FAILED_ROOT, VARIANT, Cell, variant_name)

# The features split of the rows held out from a task's train split (config tuning; prepare_task): scored by
# evaluate apart from the dev splits, chosen on by dropbench.train.tuning and the oracle.
HELD_OUT = "held_out"
# A re-run of a diverged fine-tune (dropbench.report.retries) has seed first seed + RETRY_SEED_STEP x attempt,
# so with retry_diverged the configured seeds stay below it (config_check).
RETRY_SEED_STEP = 1000


def prunes(model_cfg: dict) -> bool:
    return model_cfg.get("prune", True)


def ks_for(model_cfg: dict, config: dict, strategy: str | None = None) -> list[int]:
    """k values of a pruned model: ``strategy_k[strategy]`` if given, else the model's or the global k."""
    if strategy in config.get("strategy_k", {}):
        return list(config["strategy_k"][strategy])
    return list(model_cfg.get("k", config["k"]))


def threshold_variants(config: dict) -> list[tuple[str, int]]:
    """One (strategy, k) per ``cls_thresholds`` entry: ``cls_above_<thousandths>`` at k = 0, "k decided
    by the threshold" (the layer scores that decide it exist only after the prune job)."""
    return [(strategy_names.cls_threshold_name(t), 0) for t in config.get("cls_thresholds", [])]


def profile_models(config: dict) -> list[str]:
    """The models of the layer-importance profile: config ``layer_profile`` true (every pruned model),
    false, or a list of model names (``--config layer_profile=true`` passes the string)."""
    chosen = config.get("layer_profile", False)
    if chosen in (True, "true"):
        return [model for model, model_cfg in config["models"].items() if prunes(model_cfg)]
    if chosen in (False, "false", None):
        return []
    return list(chosen)


def profile_strategies(model_cfg: dict) -> list[str]:
    """``layer1`` .. ``layer<L>``: each drops only that layer (1-based), at k = 1."""
    return [f"layer{i}" for i in range(1, model_cfg["num_layers"] + 1)]


def subset_models(config: dict) -> list[str]:
    """The models of config ``subsets`` (every set of k layers dropped, issue 25): ``subsets.models`` true
    (every pruned model) or a list of model names; none without ``subsets``."""
    chosen = (config.get("subsets") or {}).get("models", False)
    if chosen in (True, "true"):
        return [model for model, model_cfg in config["models"].items() if prunes(model_cfg)]
    if chosen in (False, "false", None):
        return []
    return list(chosen)


def subset_variants(model_cfg: dict, ks) -> list[tuple[str, int]]:
    """(``drop_<i>_<j>...``, k) for every set of k of the model's layers (1-based, ascending), for each k;
    at k = 1 the profile's ``layer<i>``."""
    layers = range(1, model_cfg["num_layers"] + 1)
    return [(strategy_names.subset_name(chosen), k) for k in ks for chosen in itertools.combinations(layers, k)]


def cells(config: dict) -> list[Cell]:
    """Every cell named by the config, sorted; one baseline per (model, task, seed), plus the
    single-layer cells (``layer<i>``, k = 1) of the models in ``layer_profile`` and every subset
    (``drop_<i>_<j>...``) at each ``subsets.k`` of the models in ``subsets``."""
    out = []
    in_profile, in_subsets = profile_models(config), subset_models(config)
    for model, model_cfg in config["models"].items():
        variants = [(BASELINE, 0)]
        if prunes(model_cfg):
            variants += [(s, k) for s in config["strategies"] for k in ks_for(model_cfg, config, s)]
            variants += threshold_variants(config)
        if model in in_profile:
            variants += [(s, 1) for s in profile_strategies(model_cfg) if (s, 1) not in variants]
        if model in in_subsets:
            variants += [v for v in subset_variants(model_cfg, config["subsets"]["k"]) if v not in variants]
        for task in config["tasks"]:
            for seed in config["seeds"]:
                out += [Cell(model, strategy, k, task, seed) for strategy, k in variants]
    return sorted(out)


def export_seed(config: dict) -> int:
    """The seed whose fine-tunes config ``export`` exports: its ``seed``, else the first of ``seeds``."""
    return config["export"].get("seed", config["seeds"][0])


def export_cells(config: dict) -> list[Cell]:
    """The cells config ``export`` names: each of its variants (``<strategy>-k<k>``) of every model and task
    of the grid that has it, at ``export_seed``; none without ``export``."""
    if not config.get("export"):
        return []
    variants, seed = set(config["export"]["variants"]), export_seed(config)
    return [cell for cell in cells(config) if cell.variant in variants and cell.seed == seed]


# Where a cell's export goes (dropbench.export.exports): one per (model, variant, task), whichever seed.
EXPORT_DIR = f"exports/{{model}}/{VARIANT}/{{task}}"


def export_dir(cell: Cell) -> str:
    return EXPORT_DIR.format(model=cell.model, strategy=cell.strategy, k=cell.k, task=cell.task)


def pretrained_dir(model: str) -> str:
    return f"results/models/{model}/pretrained"


def features_dir(model: str, task: str) -> str:
    return f"results/features/{model}/{task}"


def latency_file(model: str, strategy: str, k: int, scope: str) -> str:
    """Inference latency of one architecture (``measure_latency``); scope as for ``pruned_dir``."""
    return f"results/latency/{model}/{variant_name(strategy, k)}/{scope}.json"


def pruned_dir(model: str, strategy: str, k: int, scope: str) -> str:
    """``scope`` is ``any`` for data-free strategies, or the task whose data chose the layers."""
    return f"results/models/{model}/pruned/{variant_name(strategy, k)}/{scope}"


