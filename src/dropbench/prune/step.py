"""The ``prune`` step: score layers on task data when the strategy needs it, then drop them and save the
smaller checkpoint beside its tokenizer files, with ``pruning.json``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from dropbench.prune import architectures, layer_drop, layer_scores, strategies, strategy_names
from dropbench.data import features, tasks

log = logging.getLogger(__name__)

# Files that save_pretrained writes itself or that hold (old) weights; every
# other file in the source directory (tokenizer, vocab, README, ...) is copied.
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth", ".onnx")
_NOT_COPIED_NAMES = {
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "tf_model.h5.index.json",
    "pruning.json",
}


def scoring_split(task: str, split: str) -> str:
    """The features split that ``scoring.split`` names: ``train``, or ``dev``: the task's first dev split
    (MNLI: validation_matched)."""
    if split not in ("train", "dev"):
        raise ValueError(f"config key 'scoring.split': bad value {split!r}; allowed: train, dev")
    return tasks.TRAIN if split == "train" else tasks.get_task(task).dev_splits[0]


def scoring_batches(features_dir: str | Path, sample_size: int, seed: int, batch_size: int, pad_id: int,
                    split: str = "train") -> list[dict]:
    """A seeded sample of the inputs of one features split (the task's training inputs by default),
    batched, labels left out."""
    rows = features.load(features.split_path(features_dir, split))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(rows), size=min(sample_size, len(rows)), replace=False))
    batches = []
    for start in range(0, len(picked), batch_size):
        batch = rows.batch(picked[start : start + batch_size], pad_id)
        batch.pop("labels")
        batches.append(batch)
    return batches


def check_k(model: str, pretrained_dir: str | Path, k: int, strategy: str | None = None) -> int:
    """k against the downloaded model's depth, known only now for hub and split-package sources.
    A strategy that decides k itself (the [CLS] threshold rule) has k = 0."""
    depth = architectures.depth_from_config_dict(json.loads((Path(pretrained_dir) / "config.json").read_text()))
    if strategy is not None and strategies.decides_k(strategy):
        strategies.validate(strategy, depth, k)
    elif not 0 < k < depth:
        raise ValueError(
            f"config key 'k' (or 'models.{model}.k'): bad value {k}; allowed: 1..{depth - 1} "
            f"(model {model!r} has {depth} layers)"
        )
    return depth


def prune_step(
    model: str,
    pretrained_dir: str | Path,
    out_dir: str | Path,
    strategy: str,
    k: int,
    features_dir: str | Path | None,
    scoring: dict,
    scope: str,
    expected_dropped: list[int] | None = None,
    search_record: str | Path | None = None,
) -> dict:
    """``scope``: the task whose data scored the layers, or "any" (data-free strategies); recorded with
    ``model`` in pruning.json, so readers need not parse the directory name.
    ``expected_dropped``: the list the workflow resolved while planning (data-free strategies);
    the job refuses to write a model that drops other layers than its params say.
    ``search_record``: the greedy search's record of step k (``greedy``: its order is the layers to drop)."""
    depth = check_k(model, pretrained_dir, k, strategy)
    context = {"seed": scoring["seed"]}
    if strategies.is_searched(strategy):
        context.update(greedy_context(search_record, model, scope, k))
    if strategies.needs_data(strategy):
        if features_dir is None:
            raise ValueError(f"strategy {strategy!r} scores layers on task data, but no task features were given")
        split = scoring_split(scope, scoring.get("split", "train"))
        encoder = AutoModel.from_pretrained(pretrained_dir, use_safetensors=True, trust_remote_code=False)
        batches = scoring_batches(features_dir, scoring["sample_size"], scoring["seed"], scoring["batch_size"],
                                  encoder.config.pad_token_id or 0, split)
        with torch.inference_mode():
            similarities = layer_scores.layer_similarities(encoder, batches)
        context.update(similarity=similarities["all_tokens"], cls_similarity=similarities["cls"], scored_on=split)
        log.info("scored layers on %d examples of the %s split of %s", sum(len(b["input_ids"]) for b in batches),
                 split, features_dir)
    if expected_dropped is not None:
        found = strategies.layers_to_drop(strategy, depth, k, context)
        if found != list(expected_dropped):
            raise ValueError(f"strategy {strategy!r} (k={k}) now drops layers {found}, but the workflow planned "
                             f"{list(expected_dropped)}; the strategy's code changed during the run, run snakemake again")
    info = prune_checkpoint(pretrained_dir, out_dir, strategy, k, context, {"model": model, "scope": scope})
    log.info("dropped layers %s, kept %s", info["dropped"], info["kept"])
    return info


def greedy_context(search_record: str | Path | None, model: str, task: str, k: int) -> dict:
    """The greedy search's order from its step-k record (dropbench.prune.greedy), checked to be this model's and task's."""
    if search_record is None:
        raise ValueError("strategy 'greedy' drops the layers its search chose, but no search record was given")
    record = json.loads(Path(search_record).read_text())
    if (record["model"], record["task"], record["step"]) != (model, task, k):
        raise ValueError(f"{search_record} is the greedy search of {record['model']}/{record['task']} step {record['step']}, "
                         f"not of {model}/{task} step {k}")
    return {"greedy_order": record["order"], "search_record": str(search_record)}


def prune_checkpoint(src_dir, out_dir, strategy: str, k: int, context: dict | None = None,
                     identity: dict | None = None) -> dict:
    """Drop ``k`` layers chosen by ``strategy`` from the model in ``src_dir``; write it to ``out_dir``.

    ``context`` goes to the strategy (data-driven strategies need
    ``context["similarity"]`` and ``context["cls_similarity"]`` from ``layer_scores.layer_similarities``
    on the unpruned model; ``context["scored_on"]`` names the split they were measured on).
    ``identity`` (the workflow's model name and scope) heads the info. A strategy that decides k itself
    is called with k = 0, and the info's ``k`` is the number of layers it dropped.
    Returns the info also written to ``out_dir/pruning.json``.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    context = dict(context or {})
    strategies.validate(strategy, k=k)
    model = AutoModel.from_pretrained(src_dir, use_safetensors=True, trust_remote_code=False)
    before = layer_drop.num_layers(model.config)
    params_before = _param_count(model)
    dropped = strategies.layers_to_drop(strategy, before, k, context)
    layer_drop.drop_layers(model, dropped)
    info = {
        **(identity or {}),
        "strategy": strategy,
        "k": len(dropped),
        "model_type": model.config.model_type,
        "num_layers_before": before,
        "num_layers_after": layer_drop.num_layers(model.config),
        "dropped": dropped,
        "kept": [i for i in range(before) if i not in dropped],
        "params_before": params_before,
        "params_after": _param_count(model),
        "seed": context.get("seed"),
        "scores": None,
    }
    if context.get("similarity") is not None:
        info.update(_score_record(strategy, context))
    if context.get("search_record") is not None:  # greedy: where its layers come from
        info.update(search_record=context["search_record"], search_order=[int(i) for i in context["greedy_order"]])
    if strategies.family_of(strategy)[0] == strategies.ITERATIVE:  # the order iterative_finetune drops them in
        info["drop_order"] = strategies.drop_order(strategy, before, k, context)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temp dir beside out_dir and rename, so a crash never leaves a
    # complete-looking out_dir behind.
    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        model.save_pretrained(tmp_dir)  # safetensors is the default (and, in transformers 5, the only) format
        _copy_tokenizer_files(src_dir, tmp_dir)
        (tmp_dir / "pruning.json").write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return info


def _score_record(strategy: str, context: dict) -> dict:
    """``scores``: the per-layer scores the strategy's choice rests on (the [CLS] similarity for the
    threshold rule, else the all-token one; ``score_kind`` says which); ``cls_scores``: the [CLS]
    similarity of each layer; ``scored_on``: the split they were measured on; ``threshold`` for the
    [CLS] threshold rule."""
    cls_scores = layer_scores.per_layer_contribution(context["cls_similarity"]) if context.get("cls_similarity") is not None else None
    threshold = strategy_names.cls_threshold_of(strategy)
    record = {
        "scores": cls_scores if threshold is not None else layer_scores.per_layer_contribution(context["similarity"]),
        "score_kind": "cls" if threshold is not None else "all_tokens",
        "cls_scores": cls_scores,
        "scored_on": context.get("scored_on", "train"),
    }
    if threshold is not None:
        record["threshold"] = threshold
    return record


def _copy_tokenizer_files(src_dir: Path, dst_dir: Path) -> None:
    for path in sorted(src_dir.iterdir()):
        if not path.is_file() or path.name in _NOT_COPIED_NAMES or path.name.endswith(_NOT_COPIED_SUFFIXES):
            continue
        if not (dst_dir / path.name).exists():
            shutil.copy2(path, dst_dir / path.name)


def _param_count(model) -> int:
    # parameters() yields shared tensors (ALBERT, tied embeddings) once.
    return sum(p.numel() for p in model.parameters())
