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

from dropbench import architectures, features, layer_drop, layer_scores, strategies

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


def scoring_batches(features_dir: str | Path, sample_size: int, seed: int, batch_size: int, pad_id: int) -> list[dict]:
    """A seeded sample of the task's training inputs, batched, labels left out."""
    train = features.load(features.split_path(features_dir, "train"))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(train), size=min(sample_size, len(train)), replace=False))
    batches = []
    for start in range(0, len(picked), batch_size):
        batch = train.batch(picked[start : start + batch_size], pad_id)
        batch.pop("labels")
        batches.append(batch)
    return batches


def check_k(model: str, pretrained_dir: str | Path, k: int) -> int:
    """k against the downloaded model's depth, known only now for hub and split-package sources."""
    depth = architectures.depth_from_config_dict(json.loads((Path(pretrained_dir) / "config.json").read_text()))
    if not 0 < k < depth:
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
) -> dict:
    """``scope``: the task whose data scored the layers, or "any" (data-free strategies); recorded with
    ``model`` in pruning.json, so readers need not parse the directory name.
    ``expected_dropped``: the list the workflow resolved while planning (data-free strategies);
    the job refuses to write a model that drops other layers than its params say."""
    depth = check_k(model, pretrained_dir, k)
    context = {"seed": scoring["seed"]}
    if strategies.needs_data(strategy):
        if features_dir is None:
            raise ValueError(f"strategy {strategy!r} scores layers on task data, but no task features were given")
        encoder = AutoModel.from_pretrained(pretrained_dir, use_safetensors=True, trust_remote_code=False)
        batches = scoring_batches(features_dir, scoring["sample_size"], scoring["seed"], scoring["batch_size"], encoder.config.pad_token_id or 0)
        with torch.inference_mode():
            context["similarity"] = layer_scores.hidden_similarity(encoder, batches)
        log.info("scored layers on %d examples from %s", sum(len(b["input_ids"]) for b in batches), features_dir)
    if expected_dropped is not None:
        found = strategies.layers_to_drop(strategy, depth, k, context)
        if found != list(expected_dropped):
            raise ValueError(f"strategy {strategy!r} (k={k}) now drops layers {found}, but the workflow planned "
                             f"{list(expected_dropped)}; the strategy's code changed during the run, run snakemake again")
    info = prune_checkpoint(pretrained_dir, out_dir, strategy, k, context, {"model": model, "scope": scope})
    log.info("dropped layers %s, kept %s", info["dropped"], info["kept"])
    return info


def prune_checkpoint(src_dir, out_dir, strategy: str, k: int, context: dict | None = None,
                     identity: dict | None = None) -> dict:
    """Drop ``k`` layers chosen by ``strategy`` from the model in ``src_dir``; write it to ``out_dir``.

    ``context`` goes to the strategy (data-driven strategies need
    ``context["similarity"]`` from ``layer_scores.hidden_similarity`` on the
    unpruned model). ``identity`` (the workflow's model name and scope) heads the info.
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
        "k": k,
        "model_type": model.config.model_type,
        "num_layers_before": before,
        "num_layers_after": layer_drop.num_layers(model.config),
        "dropped": dropped,
        "kept": [i for i in range(before) if i not in dropped],
        "params_before": params_before,
        "params_after": _param_count(model),
        "seed": context.get("seed"),
        "scores": layer_scores.per_layer_contribution(context["similarity"]) if context.get("similarity") is not None else None,
    }
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


def _copy_tokenizer_files(src_dir: Path, dst_dir: Path) -> None:
    for path in sorted(src_dir.iterdir()):
        if not path.is_file() or path.name in _NOT_COPIED_NAMES or path.name.endswith(_NOT_COPIED_SUFFIXES):
            continue
        if not (dst_dir / path.name).exists():
            shutil.copy2(path, dst_dir / path.name)


def _param_count(model) -> int:
    # parameters() yields shared tensors (ALBERT, tied embeddings) once.
    return sum(p.numel() for p in model.parameters())
