"""What each job's result depends on: its Snakemake ``params:`` and extra ``input:`` files.

Snakemake re-runs a job when its params or input files change, so each function here returns
exactly what determines one job's output, and nothing operational (how often state is saved,
evaluation batch size, checksums that only verify). The scripts read operational settings from
``snakemake.config``.

``STAGE_VERSIONS`` is part of every stage's params and of every metrics record. Bump a stage's
number when a code change alters what that stage produces (e.g. a change to the training loop in
``train.py`` that changes the weights; see README "What re-runs when"), so exactly that stage and
everything below it re-run; code edits that keep results the same need no bump.

Snakemake compares params as written (their ``repr``), so every params function returns ``canonical``
values (decorator ``job``): a config written with its keys in another order, or its numbers spelt
differently, gives the same params and re-runs nothing.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path

from dropbench.data.tasks import find_split_file, get_task, local_data_dir
from dropbench.prune import strategies
from dropbench.plan.cells import CELL_KEYS

STAGE_VERSIONS = {"download": 1, "prepare": 1, "prune": 1, "finetune": 1, "evaluate": 1}

# training keys that change the fine-tuned weights; every other training key (checkpoint_minutes, and
# operational keys added later) is read by the job from the config and never triggers a re-run.
# max_length is part of prepare_task's params (the features), so it reaches fine-tuning through them.
WEIGHT_KEYS = ("epochs", "learning_rate", "batch_size", "warmup_ratio", "weight_decay", "max_grad_norm",
               "group_by_length")
# weight keys added later, part of the params only when set (0 means unset), so older jobs keep theirs
OPTIONAL_WEIGHT_KEYS = ("min_steps",)
# training keys that only say how a job runs (never its weights): read from the config, not in the params,
# and left out of a saved training state's fingerprint so changing them still resumes it. Every field of
# train.TrainConfig is a weight key, an optional weight key, a cell key (seed, head: from the job's params)
# or one of these; tests/test_train.py checks that the four cover the fields once each.
OPERATIONAL_KEYS = ("checkpoint_minutes",)
# TrainConfig fields that come from the job's params, not the training section: the seed and the model's head
JOB_KEYS = ("seed", "head")
# What a cell's metrics.json records of its fine-tune (``trained_with``, from the train log's settings), so
# that planning can tell a cell made under other settings without Snakemake's metadata (trained_settings).
TRAINED_KEYS = (*WEIGHT_KEYS, *OPTIONAL_WEIGHT_KEYS, *JOB_KEYS)
# iterative_<base>: epochs of fine-tuning before each layer drop (dropbench.train.families).
ITERATIVE_EPOCHS_PER_DROP = 2
# What dropbench.export.exports writes (config export): bump it when a change alters an export, and only exports re-run.
# Here, not in dropbench.export.exports, so that planning never reaches the module that imports onnx.
EXPORT_VERSION = 1
# Keys of a model source that only verify the staged copy.
SOURCE_CHECK_KEYS = ("sha256", "size")

# Canonical key order of the mappings named here (for config mappings, the order the shipped configs and
# config/README.md write them in), so that the params of every shipped config are those planned before
# issue 27 and nothing re-runs; every other mapping's keys, and keys not listed, are sorted.
KEY_ORDER = {
    "training": WEIGHT_KEYS,
    "cell": CELL_KEYS,
    "source": ("kind", "repo_id", "dataset", "revision", "package", "pip_name", "path", "packages", "member",
               "subdir"),
    "scoring": ("sample_size", "seed", "batch_size", "split"),
    "plots": ("style", "dpi", "panel_width", "panel_height", "font_size"),
    "statistics": ("resamples", "alpha", "seed"),
}


def canonical(value, name: str | None = None):
    """``value`` as one spelling of itself: mappings become dicts with their keys in canonical order
    (``KEY_ORDER[name]`` first, where ``name`` is the key the mapping sits under, then the others
    sorted), tuples become lists, integers ``int`` and other real numbers ``float`` (YAML reads
    ``2.0e-4`` and ``0.0002`` as the same float; ``3`` and ``3.0`` stay different); recursively."""
    if isinstance(value, Mapping):
        rank = {key: i for i, key in enumerate(KEY_ORDER.get(name, ()))}
        keys = sorted(value, key=lambda key: (rank.get(key, len(rank)), str(key)))
        return {key: canonical(value[key], key) for key in keys}
    if isinstance(value, (list, tuple)):
        return [canonical(item, name) for item in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def job(fn: Callable[..., dict]) -> Callable[..., dict]:
    """A params function whose result is canonical: its own keys in the order it builds them (the same
    for every config), each value canonical under its key."""

    @functools.wraps(fn)
    def params(*args, **kwargs) -> dict:
        return {key: canonical(value, key) for key, value in fn(*args, **kwargs).items()}

    return params


@job
def download_params(source: dict) -> dict:
    return {"source": {k: v for k, v in source.items() if k not in SOURCE_CHECK_KEYS},
            "version": STAGE_VERSIONS["download"]}


def download_inputs(source: dict) -> list[str]:
    """A local model directory's files, so that editing them re-stages the model (also without a sha256;
    listed with one too, so that adding a sha256 changes no job's inputs)."""
    if source["kind"] != "local":
        return []
    root = Path(source["path"]).expanduser()
    return sorted(str(p) for p in root.iterdir() if p.is_file()) if root.is_dir() else []


@job
def prepare_params(task_cfg: dict, max_length: int, subsample_seed: int, tuning: dict | None = None) -> dict:
    """With ``tuning`` (learning-rate selection, dropbench.train.tuning), also the rows held out of the train
    split and their seed; without it the params are those planned before ``tuning`` existed."""
    params = {"source": task_cfg["source"], "max_length": max_length,
              "max_train_examples": task_cfg.get("max_train_examples"), "subsample_seed": subsample_seed}
    if tuning:
        params["held_out"] = held_out(tuning)
    return {**params, "version": STAGE_VERSIONS["prepare"]}


def held_out(tuning: dict) -> dict:
    """The held-out rows of config ``tuning``, as ``prepare.prepare_task`` takes them."""
    return {"rows": tuning["held_out"], "seed": tuning["seed"]}


def prepare_inputs(task: str, source: dict) -> list[str]:
    """The local data files of a task (one per split): editing one re-runs its prepare_task."""
    if source["kind"] != "local":
        return []
    spec = get_task(task)
    directory = local_data_dir(source["path"])  # the user's, else the workflow's shipped copy
    return [str(find_split_file(spec, directory, split)) for split in spec.splits]


def scoring_params(scoring: dict) -> dict:
    """The ``scoring`` settings that decide layer scores. The default split is left out, so that jobs
    planned before ``scoring.split`` existed keep their params."""
    return {key: value for key, value in scoring.items() if (key, value) != ("split", "train")}


@job
def prune_params(strategy: str, k: int, depth: int | None, scoring: dict, search_order: list[int] | None = None) -> dict:
    """A data-free strategy's resolved list of dropped layers when the depth is known (so any code
    change that changes the list re-runs exactly its cells); a data-driven one's scoring settings;
    ``greedy``'s layers from its search's order (``search_order``, 1-based; the step-k record)."""
    params = {"strategy": strategy, "k": k, "version": STAGE_VERSIONS["prune"]}
    if strategies.needs_data(strategy):
        return {**params, "scoring": scoring_params(scoring), "code": strategy_code_hash(strategy)}
    if strategies.is_searched(strategy):  # known once the search's step k is done (an input of the job)
        dropped = None if search_order is None else strategies.layers_to_drop(strategy, depth, k, {"greedy_order": search_order})
        return {**params, "dropped": dropped, "code": strategy_code_hash(strategy)}
    context = {"seed": scoring["seed"]}
    if depth is None:  # a hub source without num_layers: the list is known only after download
        return {**params, "seed": scoring["seed"], "code": strategy_code_hash(strategy)}
    params["dropped"] = strategies.layers_to_drop(strategy, depth, k, context)
    if strategies.family_of(strategy)[0] == strategies.ITERATIVE:
        params["order"] = strategies.drop_order(strategy, depth, k, context)
    return params


def strategy_code_hash(strategy: str) -> str:
    """sha256 of the strategy function's source (its own lines, not the helpers it calls)."""
    fn = strategies.function(strategy)
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):  # no source file (e.g. defined in a notebook): its name only
        text = f"{fn.__module__}.{fn.__qualname__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@job
def finetune_params(training: dict, seed: int, head: str = "native") -> dict:
    """The weight keys, the seed and the model's classifier head. Settings at their old defaults
    (``min_steps`` 0, the ``native`` head) are left out, so that jobs planned before they existed keep
    their params."""
    weights = {key: training[key] for key in WEIGHT_KEYS}
    weights.update({key: training[key] for key in OPTIONAL_WEIGHT_KEYS if training.get(key, 0)})
    params = {"training": weights, "seed": seed, "version": STAGE_VERSIONS["finetune"]}
    if head != "native":
        params["head"] = head
    return params


@job
def tune_params(training: dict, tuning: dict, learning_rate: float, head: str = "native") -> dict:
    """A selection fine-tune (``tune_learning_rate``): the cell's weight keys at one candidate learning
    rate, with seed tuning.seed; its held-out rows come with its features input."""
    return finetune_params({**training, "learning_rate": learning_rate}, tuning["seed"], head)


def selection_rates(tuning: dict | None) -> list[float]:
    """The learning rates that get a selection fine-tune (``tune_learning_rate``) in each variant: every
    candidate of config ``tuning`` when there are two or more; none without ``tuning`` or with a single
    candidate, whose rate is fixed (there is nothing to choose between)."""
    rates = [float(lr) for lr in (tuning or {}).get("learning_rates", [])]
    return rates if len(rates) > 1 else []


@job
def choice_params(tuning: dict) -> dict:
    """``choose_learning_rate``: with a single candidate (``fixed_learning_rate``), the choice it records without
    any selection fine-tune; with several, the choice is the candidates' records (its inputs) and this is None."""
    fixed = None if selection_rates(tuning) else float(tuning["learning_rates"][0])
    return {"fixed_learning_rate": fixed, "held_out_rows": tuning["held_out"], "seed": tuning["seed"]}


@job
def iterative_params(training: dict, seed: int, head: str = "native") -> dict:
    return {**finetune_params(training, seed, head), "epochs_per_drop": ITERATIVE_EPOCHS_PER_DROP}


def trained_settings(params: dict, k: int) -> dict:
    """The ``trained_with`` a fine-tune job with ``params`` (finetune_params or iterative_params) records:
    its weight keys (optional ones at their default 0 when unset), seed and head; an iterative run trains
    ``epochs_per_drop`` more epochs per dropped layer (dropbench.train.families)."""
    settings = {**dict.fromkeys(OPTIONAL_WEIGHT_KEYS, 0), **params["training"], "seed": params["seed"],
                "head": params.get("head", "native")}
    if "epochs_per_drop" in params:
        settings["epochs"] = settings["epochs"] + params["epochs_per_drop"] * k
    return settings


def model_training(training: dict, model_cfg: dict) -> dict:
    """The config's ``training`` section as one model's fine-tunes use it: with the model's own
    ``learning_rate`` where its entry sets one."""
    if "learning_rate" in model_cfg:
        return {**training, "learning_rate": model_cfg["learning_rate"]}
    return training


def train_settings(training: dict, params: dict) -> dict:
    """The TrainConfig dict of a fine-tune job: weight keys, seed and head from its params, the rest
    (operational keys) from the config."""
    operational = {k: v for k, v in training.items() if k in OPERATIONAL_KEYS}
    return {**operational, **params["training"], "seed": params["seed"], "head": params.get("head", "native")}


@job
def latency_params(protocol: dict) -> dict:
    """The latency protocol, keys sorted: reordering them in the YAML must not re-time anything."""
    return canonical(protocol)


@job
def evaluate_params(cell: dict) -> dict:
    return {"cell": cell, "version": STAGE_VERSIONS["evaluate"]}


@job
def profile_scores_params(scoring: dict) -> dict:
    return {"scoring": scoring_params(scoring), "version": STAGE_VERSIONS["prune"]}


@job
def export_params(cell: dict) -> dict:
    """What an export holds beyond its input files (the cell's publish folder, metrics.json and dev features):
    the cell (its seed is not in the export's path) and the export format version (dropbench.export.exports)."""
    return {"cell": cell, "version": EXPORT_VERSION}


@job
def card_params(cell: dict, model_cfg: dict) -> dict:
    """What a cell's model card holds beyond its input files (metrics.json, train_log.json, stats.csv and the
    fine-tuned and tokenizer files): the cell, the base model's note, hub id and license and the card's format
    version (``dropbench.report.model_card``). Not the workflow commit: the card records the one that wrote it."""
    from dropbench.report.model_card import CARD_VERSION, base_identity

    return {"cell": cell, "note": model_cfg.get("note", ""), "base": base_identity(model_cfg), "version": CARD_VERSION}
