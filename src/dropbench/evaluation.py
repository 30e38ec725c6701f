"""Evaluate one fine-tuned cell on the task's official dev split(s): the ``evaluate`` step."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification

from dropbench import chance, features, glue, metrics
from dropbench.batching import sorted_batches
from dropbench.device import autocast, pick_device


@torch.inference_mode()
def predict(model, split: features.Features, device, batch_size: int, is_regression: bool, desc: str) -> np.ndarray:
    model.eval()
    pad_id = model.config.pad_token_id or 0
    outputs = np.zeros(len(split), dtype=np.float32 if is_regression else np.int64)
    for indices in tqdm(sorted_batches(split.lengths(), batch_size), desc=desc, file=sys.stderr, mininterval=5):
        batch = {k: v.to(device) for k, v in split.batch(indices, pad_id).items() if k != "labels"}
        with autocast(device):
            logits = model(**batch).logits.float()
        outputs[indices] = logits[:, 0].cpu().numpy() if is_regression else logits.argmax(-1).cpu().numpy()
    return outputs


def evaluate_cell(finetuned_dir: str | Path, features_dir: str | Path, task: str, eval_batch_size: int) -> dict:
    """Task metrics on every dev split, their chance levels (from the dev labels), how many distinct
    values the model predicts per split, the predictions, and the size of the model (its latency is
    measured by ``dropbench.latency``, once per architecture)."""
    spec = glue.get_task(task)
    device = pick_device()
    model = AutoModelForSequenceClassification.from_pretrained(finetuned_dir, use_safetensors=True).to(device)
    started = time.perf_counter()
    scores, chance_levels, distinct, dev_predictions = {}, {}, {}, {}
    for split_name in spec.dev_splits:
        split = features.load(features.split_path(features_dir, split_name))
        predictions = predict(model, split, device, eval_batch_size, spec.is_regression, f"eval {task}/{split_name}")
        split_scores = metrics.compute(task, predictions, split.labels)
        dev_predictions[split_name] = (predictions, split.labels)
        prefix = "" if len(spec.dev_splits) == 1 else f"{split_name}_"
        scores.update({f"{prefix}{name}": float(value) for name, value in split_scores.items()})
        chance_levels.update({f"{prefix}{name}": level for name, level in chance.chance_levels(split_scores, split.labels).items()})
        distinct[split_name] = int(len(np.unique(predictions)))
    eval_seconds = time.perf_counter() - started
    return {
        "metrics": scores,
        "chance": chance_levels,
        "distinct_predictions": distinct,
        "eval_seconds": eval_seconds,
        "dev_rows": {s: len(features.load(features.split_path(features_dir, s))) for s in spec.dev_splits},
        "parameters": sum(p.numel() for p in model.parameters()),
        "predictions": dev_predictions,
    }
