"""The ``prune`` step: score layers on task data when the strategy needs it, then drop them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from dropbench import adapters, features, layer_scores, pruning, strategies

log = logging.getLogger(__name__)


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
    depth = adapters.depth_from_config_dict(json.loads((Path(pretrained_dir) / "config.json").read_text()))
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
    expected_dropped: list[int] | None = None,
) -> dict:
    """``expected_dropped``: the list the workflow resolved while planning (data-free strategies);
    the job refuses to write a model that drops other layers than its params say."""
    depth = check_k(model, pretrained_dir, k)
    context = {"seed": scoring["seed"]}
    if strategies.needs_data(strategy):
        if features_dir is None:
            raise ValueError(f"strategy {strategy!r} scores layers on task data, but no task features were given")
        model = AutoModel.from_pretrained(pretrained_dir, use_safetensors=True, trust_remote_code=False)
        batches = scoring_batches(features_dir, scoring["sample_size"], scoring["seed"], scoring["batch_size"], model.config.pad_token_id or 0)
        with torch.inference_mode():
            context["similarity"] = layer_scores.hidden_similarity(model, batches)
        log.info("scored layers on %d examples from %s", sum(len(b["input_ids"]) for b in batches), features_dir)
    if expected_dropped is not None:
        found = strategies.layers_to_drop(strategy, depth, k, context)
        if found != list(expected_dropped):
            raise ValueError(f"strategy {strategy!r} (k={k}) now drops layers {found}, but the workflow planned "
                             f"{list(expected_dropped)}; the strategy's code changed during the run, run snakemake again")
    info = pruning.prune_checkpoint(pretrained_dir, out_dir, strategy, k, context)
    log.info("dropped layers %s, kept %s", info["dropped"], info["kept"])
    return info
