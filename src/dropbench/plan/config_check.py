"""Checks of a config, run before any job starts: ``load_and_check`` is the one entry point that the
workflow (``workflow/rules/common.smk``) and ``dropbench estimate`` both call.

Every error names the key, the bad value and what is allowed. In order: keys given twice in a YAML
file (``check_config_files``: YAML itself would silently keep the last one), command-line strings
turned into the schema's types (``values_from_command_line``), unknown keys with the closest valid one
(``check_known_keys``), the JSON schema, which also fills the defaults (``validate_schema``) (those four:
dropbench.plan.config_files), and the checks a schema cannot express (``check``, here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dropbench.prune import architectures, strategies, strategy_names
from dropbench.data import sources
from dropbench.data.tasks import TASKS, GlueDataError, find_split_file, get_task, local_data_dir
from dropbench.plan import grid
from dropbench.plan.config_files import (SCHEMA, ConfigError, check_config_files, check_known_keys, load_schema,
                                         validate_schema, values_from_command_line)
from dropbench.report import paper_score
from dropbench.plan.grid import BASELINE, RETRY_SEED_STEP

# Model and task names become path components under results/: no separators, no leading dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit (the name is a directory under results/)"
# numpy's seeds are 32-bit; the Snakemake wildcard for seeds takes digits only.
MAX_SEED = 2**32 - 1


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"config key {key!r}: bad value {value!r}; allowed: {allowed}")


def data_driven(config: dict) -> list[str]:
    """The strategies of the grid that choose layers on task data (so their pruned models are per task): those
    that score layers, the greedy search, and the [CLS] threshold cells (``check`` registers those)."""
    thresholds = [strategy_names.cls_threshold_name(t) for t in config.get("cls_thresholds", [])]
    searched = [name for name in config["strategies"] if strategies.is_searched(name)]  # greedy: chosen per task too
    return [name for name in config["strategies"] if strategies.needs_data(name)] + searched + thresholds


def load_and_check(config: dict, schema_path: str | Path = SCHEMA, config_files=()) -> dict[str, int | None]:
    """Every check of a config, in the workflow's order; fills the schema's defaults into ``config`` (in
    place) and returns ``check``'s model depths. Raises ConfigError, naming the key and the value."""
    check_config_files(config_files)
    schema = load_schema(schema_path)
    values_from_command_line(config, schema)
    check_known_keys(config, schema_path)
    validate_schema(config, schema)
    return check(config)


# ---- values given on the command line


def check(config: dict) -> dict[str, int | None]:
    """Raise ConfigError on the first bad value; return each model's depth where it is known before
    any job (``num_layers`` or a config.json on disk), else None."""
    strategies.load_from_config(config)
    _check_grid(config)
    for task_name, task in config["tasks"].items():
        _check_task(task_name, task)
    depths = {model: _check_model(model, model_cfg, config) for model, model_cfg in config["models"].items()}
    _check_layer_profile(config)
    _check_subsets(config)
    _check_tuning(config)
    _check_greedy(config, depths)
    _check_sensitivity(config)
    _check_export(config)
    _check_tracking(config)
    _check_numbers(config)
    try:
        paper_score.paper_metrics(list(config["tasks"]), config.get("paper_score"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return depths


def _check_grid(config: dict) -> None:
    for key in ("models", "tasks", "seeds"):
        if not config[key]:
            _fail(key, config[key], f"at least one entry in {key}")
    for key in ("strategies", "k", "seeds", "custom_strategies", "cls_thresholds"):
        _check_unique(key, config.get(key, []))
    for seed in config["seeds"]:
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            _fail("seeds", seed, f"integers 0..{MAX_SEED}")
    if config.get("retry_diverged", 0) and any(seed >= RETRY_SEED_STEP for seed in config["seeds"]):
        _fail("seeds", max(config["seeds"]), f"integers 0..{RETRY_SEED_STEP - 1} with retry_diverged (retries use seed + {RETRY_SEED_STEP} x attempt)")
    if not _is_int(config["scoring"]["seed"]) or not 0 <= config["scoring"]["seed"] <= MAX_SEED:
        _fail("scoring.seed", config["scoring"]["seed"], f"an integer 0..{MAX_SEED}")

    for name in config["strategies"]:
        if name == BASELINE:
            _fail("strategies", name, f"the baseline {BASELINE!r} is always run; list only strategies that drop layers")
        threshold = strategy_names.cls_threshold_of(name)
        if threshold is not None:
            _fail("strategies", name, f"strategies of fixed k; [CLS] threshold cells come from 'cls_thresholds: [{threshold}]'")
        if strategy_names.single_layer_number(strategies.base_of(name)) is not None:
            _fail("strategies", name, f"strategies of the grid; single-layer cells ({name}) come from 'layer_profile'")
        if strategy_names.subset_layers(strategies.base_of(name)) is not None:
            _fail("strategies", name, f"strategies of the grid; cells of named subsets ({name}) come from 'subsets'")
        if not strategies.is_known(name):  # a registered name, or a family's (task_specific_<base>, ...)
            _fail("strategies", name, strategies.allowed())
    for name in config.get("strategy_k", {}):
        if name not in config["strategies"]:
            _fail("strategy_k", name, f"strategies listed in 'strategies' ({', '.join(config['strategies'])})")
    for threshold in config.get("cls_thresholds", []):
        try:
            strategy_names.cls_threshold_name(threshold)
        except ValueError as err:
            raise ConfigError(f"config key 'cls_thresholds': {err}") from None
    pruned_models = [m for m, cfg in config["models"].items() if cfg.get("prune", True)]
    without_cells = [m for m in pruned_models if m not in grid.profile_models(config) + grid.subset_models(config)]
    if without_cells and not config["strategies"]:
        _fail("strategies", config["strategies"], f"at least one strategy, since {without_cells} have prune: true "
              "(or name them in layer_profile or subsets)")


def _check_layer_profile(config: dict) -> None:
    models = grid.profile_models(config)
    _check_unique("layer_profile", models)
    pruned = [m for m, cfg in config["models"].items() if cfg.get("prune", True)]
    for model in models:
        if model not in pruned:
            _fail("layer_profile", model, f"true, false or a list of models with prune: true ({', '.join(pruned) or 'none'})")
        if config["models"][model].get("num_layers") is None:
            _fail(f"models.{model}.num_layers", None,
                  "the model's depth (an integer >= 2): the layer-importance profile plans one cell per layer before any download")


def _check_subsets(config: dict) -> None:
    """``subsets``: pruned models of known depth, each k in 1..depth - 1, each once."""
    if not config.get("subsets"):
        return
    models = grid.subset_models(config)
    _check_unique("subsets.models", models)
    pruned = [m for m, cfg in config["models"].items() if cfg.get("prune", True)]
    ks = config["subsets"]["k"]
    _check_unique("subsets.k", ks)
    for model in models:
        if model not in pruned:
            _fail("subsets.models", model, f"true, false or a list of models with prune: true ({', '.join(pruned) or 'none'})")
        depth = config["models"][model].get("num_layers")
        if depth is None:
            _fail(f"models.{model}.num_layers", None,
                  "the model's depth (an integer >= 2): every subset is planned as a cell before any download")
        for k in ks:
            if not _is_int(k) or not 1 <= k <= depth - 1:
                _fail("subsets.k", k, f"numbers of layers to drop from {model}'s {depth}: 1..{depth - 1}")


def _check_sensitivity(config: dict) -> None:
    """``sensitivity``: two or more distinct model entries of the config, all of one checkpoint (source)."""
    settings = config.get("sensitivity") or []
    if not settings:
        return
    if len(settings) < 2:
        _fail("sensitivity", settings, "two or more model entries to compare, or none")
    _check_unique("sensitivity", settings)
    for name in settings:
        if name not in config["models"]:
            _fail("sensitivity", name, "model entries of this config: " + ", ".join(config["models"]))
    first = settings[0]
    for name in settings[1:]:
        if config["models"][name]["source"] != config["models"][first]["source"]:
            _fail("sensitivity", name, f"model entries with the source of {first!r} (settings compare one checkpoint)")


def _check_export(config: dict) -> None:
    """``export``: variants of the grid (``<strategy>-k<k>``, the full model ``none-k0``), each once, and a seed of it."""
    if not config.get("export"):
        return
    variants = config["export"]["variants"]
    _check_unique("export.variants", variants)
    in_grid = sorted({cell.variant for cell in grid.cells(config)})
    for variant in variants:
        if variant not in in_grid:
            _fail("export.variants", variant, f"variants of the grid: {', '.join(in_grid)}")
    seed = grid.export_seed(config)
    if seed not in config["seeds"]:
        _fail("export.seed", seed, f"one of seeds ({', '.join(map(str, config['seeds']))})")


def _check_tuning(config: dict) -> None:
    """``tuning`` (learning-rate selection, dropbench.train.tuning): distinct candidates, a seed numpy takes, and
    no strategy family (their cells fine-tune in several stages; a selection for them is not built)."""
    tuning = config.get("tuning")
    if not tuning:
        return
    rates = [float(lr) for lr in tuning["learning_rates"]]
    _check_unique("tuning.learning_rates", rates)
    if not _is_int(tuning["seed"]) or not 0 <= tuning["seed"] <= MAX_SEED:
        _fail("tuning.seed", tuning["seed"], f"an integer 0..{MAX_SEED}")
    for name in config["strategies"]:
        family = strategies.family_of(name)[0]
        if family in (strategies.TASK_SPECIFIC, strategies.ITERATIVE):
            _fail("strategies", name, "strategies outside the task_specific_* and iterative_* families with 'tuning' "
                  "(learning-rate selection is not built for them; remove 'tuning' to run them)")


def _check_greedy(config: dict, depths: dict) -> None:
    """``greedy`` chooses on rows held out from the train split (``tuning.held_out``) and plans its candidates
    from the model's depth, so every pruned model's depth must be known before any job."""
    if strategies.GREEDY not in config["strategies"]:
        return
    if not (config.get("tuning") or {}).get("held_out"):
        _fail("strategies", strategies.GREEDY, "'greedy' only with 'tuning' (tuning.held_out): the greedy search chooses "
              "on rows held out from the train split, never on dev (config/README.md)")
    for model, cfg in config["models"].items():
        if cfg.get("prune", True) and depths.get(model) is None:
            _fail(f"models.{model}.num_layers", None, "the model's depth (an integer >= 2): the greedy search plans its "
                  "candidates before any download")


def _check_tracking(config: dict) -> None:
    """``tracking.mlflow``: a tracking URI MLflow can log to (dropbench.export.tracking.uri_problem); mlflow itself is
    not imported here (``check_tracking_installed``)."""
    from dropbench.export import tracking

    mlflow_cfg = (config.get("tracking") or {}).get("mlflow")
    if not mlflow_cfg:
        return
    problem = tracking.uri_problem(mlflow_cfg["tracking_uri"])
    if problem:
        _fail("tracking.mlflow.tracking_uri", mlflow_cfg["tracking_uri"], problem)


def _is_int(value) -> bool:
    # JSON schema counts 2.0 as an integer; a k or seed becomes a path component, so it must be 2.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_unique(key: str, values: list) -> None:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        _fail(key, duplicates, "each value once")


def _check_name(key: str, name) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        _fail(key, name, f"names of {NAME_RULE}")


def _check_task(task_name: str, task: dict) -> None:
    _check_name("tasks", task_name)
    if task_name not in TASKS:
        _fail("tasks", task_name, ", ".join(sorted(TASKS)))
    n = task.get("max_train_examples")
    if n is not None and n < 1:
        _fail(f"tasks.{task_name}.max_train_examples", n, "null (all rows) or an integer >= 1")
    source = task["source"]
    if source["kind"] == "local":
        if not source.get("path"):
            _fail(f"tasks.{task_name}.source.path", source.get("path"), "a directory with the task's split files")
        spec = get_task(task_name)
        for split in spec.splits:
            try:
                find_split_file(spec, local_data_dir(source["path"]), split)
            except GlueDataError as err:
                raise ConfigError(f"config key 'tasks.{task_name}.source.path': {err}") from None
    elif not (source.get("dataset") and source.get("revision")):
        _fail(f"tasks.{task_name}.source", source, "kind hub with non-empty 'dataset' and 'revision' (a pinned commit)")


def _check_model(model: str, model_cfg: dict, config: dict) -> int | None:
    _check_name("models", model)
    try:
        sources.validate_source(model_cfg["source"])
    except ValueError as err:
        raise ConfigError(f"config key 'models.{model}.source': {err}") from None
    layers = _check_architecture(model, model_cfg, config)
    check_model_ks(model, model_cfg, config, layers)
    return layers


def check_model_ks(model: str, model_cfg: dict, config: dict, layers: int | None) -> None:
    """The k lists that apply to ``model`` (``k``, ``models.<model>.k``, ``strategy_k``) against its depth
    (None: unknown yet, so only k > 0); also for callers that learn the depth later (``dropbench estimate``)."""
    prunes = model_cfg.get("prune", True)
    key = f"models.{model}.k" if "k" in model_cfg else "k"
    ks = model_cfg.get("k", config["k"]) if prunes else []
    if prunes and not ks:
        _fail(key, ks, "at least one k > 0")
    _check_ks(key, ks, model, layers)
    for strategy, strategy_ks in config.get("strategy_k", {}).items() if prunes else ():
        if not strategy_ks:
            _fail(f"strategy_k.{strategy}", strategy_ks, "at least one k > 0")
        _check_ks(f"strategy_k.{strategy}", strategy_ks, model, layers)


def _check_ks(key: str, ks: list, model: str, layers: int | None) -> None:
    _check_unique(key, ks)
    for k in ks:
        if not _is_int(k):
            _fail(key, k, "whole numbers of layers (2, not 2.0)")
        if k <= 0 or (layers is not None and k >= layers):
            upper = f"{layers - 1} (model {model!r} has {layers} layers)" if layers else "the model's depth - 1"
            _fail(key, k, f"1..{upper}")


def _check_architecture(model: str, model_cfg: dict, config: dict) -> int | None:
    """The model's depth: from ``num_layers``, or from config.json when the source is on disk (else None).
    Sequence lengths are checked against the model's positions when its config.json is on disk."""
    declared = model_cfg.get("num_layers")
    if declared is not None and declared < 2:
        _fail(f"models.{model}.num_layers", declared, "an integer >= 2 (a layer must remain after dropping one)")
    config_json = _local_config_json(model, model_cfg["source"])
    if config_json is None:
        return declared
    found = _depth_from_config_json(model, config_json)
    _check_lengths(model, json.loads(config_json.read_text()), config)
    if declared is not None and declared != found:
        _fail(f"models.{model}.num_layers", declared, f"{found}, the depth in {config_json}")
    return found


def _local_config_json(model: str, source: dict) -> Path | None:
    """config.json of a source that is already on this machine (local or installed package), else None."""
    if source["kind"] == "local":
        root = Path(source["path"]).expanduser()
    elif source["kind"] == "package":
        try:
            root = sources.locate_package_dir(source["package"], source.get("path", "."), source.get("pip_name"))
        except sources.StagingError:
            return None  # download_model fails with the pip command that installs it
    else:
        return None  # hub and split_packages: known after download; prune checks k against the depth
    path = root / "config.json"
    if not path.is_file():
        _fail(f"models.{model}.source", str(root), "a model directory with a config.json (transformers format)")
    return path


# These architectures offset positions by the padding index, so two positions are never used.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}


def _check_lengths(model: str, model_config: dict, config: dict) -> None:
    positions = model_config.get("max_position_embeddings")
    if not isinstance(positions, int) or positions <= 0:
        return  # e.g. XLNet: relative positions, no maximum
    limit = positions - _POSITION_OFFSET.get(model_config.get("model_type"), 0)
    for key, value in (("training.max_length", config["training"]["max_length"]),
                       ("evaluation.latency.seq_len", config["evaluation"]["latency"]["seq_len"])):
        if value > limit:
            _fail(key, value, f"1..{limit} (model {model!r} has {positions} position embeddings)")


def _depth_from_config_json(model: str, path: Path) -> int:
    try:
        model_config = json.loads(path.read_text())
        model_type = model_config.get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        _fail(f"models.{model}.source", str(path), f"a readable JSON config.json ({err})")
    supported = architectures.supported_model_types()
    if model_type not in supported:
        _fail(f"models.{model}.source (model_type in {path})", model_type, "supported architectures " + ", ".join(supported))
    return architectures.depth_from_config_dict(model_config)


# (section, key, test, what is allowed); the schema has already checked the types.
_POSITIVE = (lambda v: v > 0, "a number > 0")
_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
_NUMBER_RULES = [
    ("training", "learning_rate", *_POSITIVE),
    ("training", "batch_size", *_POSITIVE),
    ("training", "epochs", *_POSITIVE),
    ("training", "max_length", *_POSITIVE),
    ("training", "warmup_ratio", lambda v: 0 <= v < 1, "a fraction of the steps, 0 <= value < 1"),
    ("training", "weight_decay", *_NON_NEGATIVE),
    ("training", "max_grad_norm", *_POSITIVE),
    ("training", "checkpoint_minutes", lambda v: v >= 0, "minutes of training between saves of the training state, >= 0 (0 = never)"),
    ("evaluation", "batch_size", *_POSITIVE),
    ("evaluation.latency", "batch_size", *_POSITIVE),
    ("evaluation.latency", "seq_len", *_POSITIVE),
    ("evaluation.latency", "warmup", *_NON_NEGATIVE),
    ("evaluation.latency", "repeats", *_POSITIVE),
    ("scoring", "sample_size", *_POSITIVE),
    ("scoring", "batch_size", *_POSITIVE),
    *[(f"resources.{job}", key, *_POSITIVE) for job in ("finetune", "evaluate", "light") for key in ("mem_mb", "runtime")],
    *[(f"resources.{job}", "threads", *_POSITIVE) for job in ("finetune", "evaluate")],
    *[(f"resources.{job}", "gpu", *_NON_NEGATIVE) for job in ("finetune", "evaluate")],
]


def _check_numbers(config: dict) -> None:
    rules = [*_NUMBER_RULES, *[(f"models.{model}", "learning_rate", *_POSITIVE) for model in config.get("models", {})]]
    for section, key, ok, allowed in rules:
        values = config
        for part in section.split("."):
            values = values.get(part, {})
        if key in values and not ok(values[key]):
            _fail(f"{section}.{key}", values[key], allowed)


