"""Checks of a config that a JSON schema cannot express, run before any job starts.

Every error names the key, the bad value and what is allowed.
"""

from __future__ import annotations

from dropbench import glue, sources, strategies
from dropbench.grid import BASELINE


class ConfigError(ValueError):
    pass


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"config key {key!r}: bad value {value!r}; allowed: {allowed}")


def data_driven(config: dict) -> list[str]:
    return [name for name in config["strategies"] if strategies.needs_data(name)]


def check(config: dict) -> None:
    strategies.load_user_strategies(config.get("custom_strategies", []))
    for task_name, task in config.get("extra_tasks", {}).items():
        if task.get("like") not in glue.GLUE_TASK_NAMES:
            _fail(f"extra_tasks.{task_name}.like", task.get("like"), ", ".join(glue.GLUE_TASK_NAMES))
        glue.derive_task(task["like"], task_name)

    if not config["models"]:
        _fail("models", config["models"], "at least one model")
    if not config["tasks"]:
        _fail("tasks", config["tasks"], "at least one task")
    if not config["seeds"]:
        _fail("seeds", config["seeds"], "at least one seed")
    for key in ("strategies", "k", "seeds"):
        duplicates = sorted({v for v in config[key] if config[key].count(v) > 1})
        if duplicates:
            _fail(key, duplicates, "each value once")

    for name in config["strategies"]:
        if name == BASELINE:
            _fail("strategies", name, f"the baseline {BASELINE!r} is always run; list only strategies that drop layers")
        if name not in strategies.available():
            _fail("strategies", name, ", ".join(strategies.available()))
    for task in config["tasks"]:
        if task not in glue.TASKS:
            _fail("tasks", task, ", ".join(sorted(glue.TASKS)) + " (or a task defined under extra_tasks)")

    pruned_models = [m for m, cfg in config["models"].items() if cfg.get("prune", True)]
    if pruned_models and not config["strategies"]:
        _fail("strategies", config["strategies"], "at least one strategy when a model has prune: true")
    for model, model_cfg in config["models"].items():
        sources.validate_source(model_cfg["source"])
        key = f"models.{model}.k" if "k" in model_cfg else "k"
        ks = model_cfg.get("k", config["k"])
        if model_cfg.get("prune", True) and not ks:
            _fail(key, ks, "at least one k > 0")
        layers = model_cfg.get("num_layers")
        for k in ks:
            if k <= 0 or (layers is not None and k >= layers):
                upper = f"{layers - 1} (the model has {layers} layers)" if layers else "the model's depth - 1"
                _fail(key, k, f"1..{upper}")

    training = config["training"]
    for key in ("learning_rate", "batch_size", "epochs", "max_length"):
        if training[key] <= 0:
            _fail(f"training.{key}", training[key], "a number > 0")
