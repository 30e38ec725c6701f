"""Cheap per-layer scores of the unpruned model for the layer-importance profile (rule
``layer_profile_scores``): how much each layer changes its input, on the same seeded sample of the
task's TRAIN inputs that the data-driven strategies score (config ``scoring``).

Every score is oriented as a predicted importance (higher: the layer changes more, so dropping it
should cost more), for layer l = 1..L (1-based, as the ``layer<i>`` cells):

- ``contribution``: 1 - the per-token cosine of the layer's input and output, averaged over every
  non-padding token (``layer_scores.hidden_similarity``, what the ``contribution`` strategy ranks by);
- ``angular_distance``: arccos of that cosine / pi (what the ``angular`` strategy ranks blocks by; for
  one layer a monotone function of ``contribution``, so its ranks are the same);
- ``cls_block_influence``: 1 - the cosine of the summary token's vector before and after the layer,
  averaged over sequences (the first token, [CLS]; the last one for left-padding tokenizers such as
  XLNet's, whose head reads the last position);
- ``mean_block_influence``: 1 - the cosine of the mean of the non-padding token vectors before and after.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from dropbench.data import features
from dropbench.prune import layer_scores
from dropbench.runtime.atomic import write_json
from dropbench.prune.step import scoring_batches

log = logging.getLogger(__name__)

SCORES = ("contribution", "angular_distance", "cls_block_influence", "mean_block_influence")


def pooled_cosines(model: torch.nn.Module, batches, padding_side: str) -> dict[str, np.ndarray]:
    """Per layer (L values): the cosine of the summary-token vectors and of the mean-pooled vectors
    between the layer's input and output, averaged over sequences."""
    model.eval()
    accepted = layer_scores._accepted_inputs(model)
    sums, count = None, 0
    with torch.inference_mode():
        for batch in batches:
            inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch and key in accepted}
            states = torch.stack(model(**inputs, output_hidden_states=True).hidden_states).double()  # (L+1, B, T, H)
            mask = inputs["attention_mask"].to(states.dtype)  # (B, T)
            if padding_side == "left":
                summary = states[:, :, -1]
            else:
                summary = states[:, :, 0]
            mean = (states * mask[None, :, :, None]).sum(2) / mask.sum(1)[None, :, None]
            pair = torch.stack([
                torch.nn.functional.cosine_similarity(summary[:-1], summary[1:], dim=-1),
                torch.nn.functional.cosine_similarity(mean[:-1], mean[1:], dim=-1),
            ]).sum(-1)  # (2, L)
            sums = pair if sums is None else sums + pair
            count += states.shape[1]
    if not count:
        raise ValueError("pooled_cosines got no sequences (empty batches?)")
    sums = (sums / count).numpy()
    return {"cls": sums[0], "mean": sums[1]}


def layer_profile_scores(similarity: np.ndarray, pooled: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """The four scores (see the module docstring) from the depth similarity matrix and pooled cosines."""
    token = np.asarray(layer_scores.per_layer_contribution(similarity))
    return {
        "contribution": (1 - token).tolist(),
        "angular_distance": (np.arccos(np.clip(token, -1.0, 1.0)) / np.pi).tolist(),
        "cls_block_influence": (1 - np.asarray(pooled["cls"])).tolist(),
        "mean_block_influence": (1 - np.asarray(pooled["mean"])).tolist(),
    }


def write_layer_profile_scores(model: str, task: str, pretrained_dir: str | Path, features_dir: str | Path,
                               scoring: dict, out_json: str | Path) -> dict:
    """Score every layer of the pre-trained model on a seeded sample of the task's train inputs."""
    encoder = AutoModel.from_pretrained(pretrained_dir, use_safetensors=True, trust_remote_code=False)
    padding_side = features.load(features.split_path(features_dir, "train")).padding_side
    batches = scoring_batches(features_dir, scoring["sample_size"], scoring["seed"], scoring["batch_size"],
                              encoder.config.pad_token_id or 0)
    similarity = layer_scores.hidden_similarity(encoder, batches)
    scores = layer_profile_scores(similarity, pooled_cosines(encoder, batches, padding_side))
    record = {"model": model, "task": task, "split": "train", "scoring": dict(scoring),
              "num_layers": len(scores["contribution"]), "scores": scores}
    write_json(out_json, record)
    log.info("scored %d layers of %s on %d %s train rows", record["num_layers"], model,
             sum(len(b["input_ids"]) for b in batches), task)
    return record
