"""Checks of a config that a JSON schema cannot express, run before any job starts.

Every error names the key, the bad value and what is allowed. ``check`` takes the config after
schema validation (defaults filled in); ``check_config_files`` finds keys given twice in a YAML
file, which YAML itself would silently resolve by keeping the last one.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from dropbench import architectures, glue, grid, paper_score, sources, strategies
from dropbench.grid import BASELINE, RETRY_SEED_STEP

# Model and task names become path components under results/: no separators, no leading dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit (the name is a directory under results/)"
# numpy's seeds are 32-bit; the Snakemake wildcard for seeds takes digits only.
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    pass


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"config key {key!r}: bad value {value!r}; allowed: {allowed}")


def data_driven(config: dict) -> list[str]:
    """The strategies of the grid that score layers on task data, [CLS] threshold cells included
    (``check`` registers those)."""
    thresholds = [strategies.cls_threshold_name(t) for t in config.get("cls_thresholds", [])]
    return [name for name in config["strategies"] if strategies.needs_data(name)] + thresholds


def unknown_keys(config: dict, schema: dict) -> list[str]:
    """Keys of ``config`` the schema does not allow, each as "path: did you mean ...?" (checked before
    schema validation so that a misspelling gets a hint instead of jsonschema's generic message)."""
    found = []

    def walk(values, node: dict, where: str) -> None:
        if not isinstance(values, dict) or node.get("type") not in ("object", None):
            return
        known = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, value in values.items():
            name = f"{where}.{key}" if where else str(key)
            if key in known:
                walk(value, known[key], name)
            elif isinstance(extra, dict):
                walk(value, extra, name)
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                found.append(f"{name!r} ({hint}allowed here: {', '.join(known)})")

    walk(config, schema, "")
    return found


def integers_from_command_line(config: dict) -> None:
    """``--config 'seeds=[1,2,3]'`` reaches the workflow as a list of strings: turn the integer-looking
    items of ``seeds`` and ``k`` into integers (anything else is left for the checks to name)."""
    for key in ("seeds", "k"):
        value = config.get(key)
        if isinstance(value, list):
            config[key] = [int(v) if isinstance(v, str) and v.strip().lstrip("-").isdigit() else v for v in value]


def check_known_keys(config: dict, schema_path) -> None:
    import yaml

    unknown = unknown_keys(config, yaml.safe_load(Path(schema_path).read_text()))
    if unknown:
        raise ConfigError(f"unknown config key(s): {'; '.join(unknown)}; see config/README.md")


def check(config: dict) -> dict[str, int | None]:
    """Raise ConfigError on the first bad value; return each model's depth where it is known before
    any job (``num_layers`` or a config.json on disk), else None."""
    strategies.load_user_strategies(config.get("custom_strategies", []))
    _check_grid(config)
    for task_name, task in config["tasks"].items():
        _check_task(task_name, task)
    depths = {model: _check_model(model, model_cfg, config) for model, model_cfg in config["models"].items()}
    _check_layer_profile(config)
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
        threshold = strategies.cls_threshold_of(name)
        if threshold is not None:
            _fail("strategies", name, f"strategies of fixed k; [CLS] threshold cells come from 'cls_thresholds: [{threshold}]'")
        if strategies.single_layer_number(strategies.family_of(name)[1]) is not None:
            _fail("strategies", name, f"strategies of the grid; single-layer cells ({name}) come from 'layer_profile'")
        if not strategies.is_known(name):  # a registered name, or a family's (task_specific_<base>, ...)
            _fail("strategies", name, strategies.allowed())
    for name in config.get("strategy_k", {}):
        if name not in config["strategies"]:
            _fail("strategy_k", name, f"strategies listed in 'strategies' ({', '.join(config['strategies'])})")
    for threshold in config.get("cls_thresholds", []):
        try:
            strategies.register_cls_thresholds([threshold])
        except ValueError as err:
            raise ConfigError(f"config key 'cls_thresholds': {err}") from None
    pruned_models = [m for m, cfg in config["models"].items() if cfg.get("prune", True)]
    without_cells = [m for m in pruned_models if m not in grid.profile_models(config)]
    if without_cells and not config["strategies"]:
        _fail("strategies", config["strategies"], f"at least one strategy, since {without_cells} have prune: true "
              "(or name them in layer_profile)")


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
    if task_name not in glue.TASKS:
        _fail("tasks", task_name, ", ".join(sorted(glue.TASKS)))
    n = task.get("max_train_examples")
    if n is not None and n < 1:
        _fail(f"tasks.{task_name}.max_train_examples", n, "null (all rows) or an integer >= 1")
    source = task["source"]
    if source["kind"] == "local":
        if not source.get("path"):
            _fail(f"tasks.{task_name}.source.path", source.get("path"), "a directory with the task's split files")
        spec = glue.get_task(task_name)
        for split in spec.splits:
            try:
                glue.find_split_file(spec, Path(source["path"]), split)
            except glue.GlueDataError as err:
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
    return layers


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
    for section, key, ok, allowed in _NUMBER_RULES:
        values = config
        for part in section.split("."):
            values = values.get(part, {})
        if key in values and not ok(values[key]):
            _fail(f"{section}.{key}", values[key], allowed)


def duplicate_keys(path: str | Path) -> list[str]:
    """Keys given more than once in one mapping of a YAML (or JSON) file, with their lines."""
    import yaml

    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return []  # unreadable files are reported by whoever loads them
    found = []

    def walk(node, where: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first_line = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
                name = f"{where}.{key}" if where else key
                line = key_node.start_mark.line + 1
                if key in first_line:
                    found.append(f"{name!r} (lines {first_line[key]} and {line})")
                else:
                    first_line[key] = line
                walk(value_node, name)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{where}[{i}]")

    walk(root, "")
    return found


def check_config_files(paths) -> None:
    for path in paths:
        duplicates = duplicate_keys(path)
        if duplicates:
            raise ConfigError(
                f"config file {path}: key(s) given more than once: {', '.join(duplicates)}; "
                "YAML would silently keep only the last; allowed: each model, task and key once"
            )
