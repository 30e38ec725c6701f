"""The ``evaluate`` step: score one fine-tuned cell on the task's official dev split(s) and write its
metrics JSON (scores, what was dropped, size, time and speed), validated on write and read."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoConfig

from dropbench.evaluate import chance, metrics, predictions
from dropbench.train import convergence, heads
from dropbench.data import features, tasks
from dropbench.prune import layer_drop
from dropbench.runtime import provenance
from dropbench.runtime.atomic import write_json
from dropbench.data.batching import sorted_batches
from dropbench.runtime.device import autocast, pick_device, reuse_freed_memory
from dropbench.plan.job_params import STAGE_VERSIONS, TRAINED_KEYS
from dropbench.plan.records import check_record
from dropbench.plan.cells import Cell
from dropbench.plan.grid import HELD_OUT

OK, DEGENERATE = "ok", "degenerate"


@torch.inference_mode()
def predict(model, split: features.Features, device, batch_size: int, is_regression: bool, desc: str,
            return_logits: bool = False):
    """The predictions (a score, or a class index) for every row; with ``return_logits`` also the logits."""
    model.eval()
    pad_id = model.config.pad_token_id or 0
    outputs = np.zeros(len(split), dtype=np.float32 if is_regression else np.int64)
    all_logits = None
    for indices in tqdm(sorted_batches(split.lengths(), batch_size), desc=desc, file=sys.stderr, mininterval=5):
        batch = {k: v.to(device) for k, v in split.batch(indices, pad_id).items() if k != "labels"}
        with autocast(device):
            logits = model(**batch).logits.float()
        outputs[indices] = logits[:, 0].cpu().numpy() if is_regression else logits.argmax(-1).cpu().numpy()
        if all_logits is None:
            all_logits = np.zeros((len(split), logits.shape[1]), dtype=np.float32)
        all_logits[indices] = logits.cpu().numpy()
    return (outputs, all_logits) if return_logits else outputs


def evaluate_cell(finetuned_dir: str | Path, features_dir: str | Path, task: str, eval_batch_size: int) -> dict:
    """Task metrics on every dev split, their chance levels (from the dev labels), how many distinct
    values the model predicts per split, the predictions, and the size of the model (its latency is
    measured by ``dropbench.evaluate.latency``, once per architecture)."""
    spec = tasks.get_task(task)
    device = pick_device()
    reuse_freed_memory()
    model = heads.load_classifier(finetuned_dir).to(device)
    started = time.perf_counter()
    scores, chance_levels, distinct, dev_predictions, dev_rows, dev_losses = {}, {}, {}, {}, {}, {}
    for split_name in spec.dev_splits:
        split = features.load(features.split_path(features_dir, split_name))
        dev_rows[split_name] = len(split)
        predicted, logits = predict(model, split, device, eval_batch_size, spec.is_regression, f"eval {task}/{split_name}",
                                    return_logits=True)
        dev_losses[split_name] = convergence.dev_loss(logits, split.labels, spec.is_regression)
        split_scores = metrics.compute(task, predicted, split.labels)
        dev_predictions[split_name] = (predicted, split.labels)
        prefix = "" if len(spec.dev_splits) == 1 else f"{split_name}_"
        scores.update({f"{prefix}{name}": float(value) for name, value in split_scores.items()})
        chance_levels.update({f"{prefix}{name}": level for name, level in chance.chance_levels(split_scores, split.labels).items()})
        distinct[split_name] = int(len(np.unique(predicted)))
    held_out = score_held_out(model, features_dir, task, device, eval_batch_size)
    eval_seconds = time.perf_counter() - started
    if held_out is not None:
        dev_predictions[HELD_OUT] = held_out.pop("predictions")
    return {
        "held_out": held_out,
        "metrics": scores,
        "chance": chance_levels,
        "distinct_predictions": distinct,
        "eval_seconds": eval_seconds,
        "dev_rows": dev_rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "predictions": dev_predictions,
        "dev_losses": dev_losses,
        "head": heads.saved_head(finetuned_dir),
    }


def score_held_out(model, features_dir, task: str, device, eval_batch_size: int) -> dict | None:
    """Scores on the rows held out from the task's train split (prepare_task's split ``held_out``, config
    ``tuning``), where the features have them: what anything that chooses (a subset, a learning rate) may
    choose on, never the dev rows we report: metrics (None where undefined), task score, rows, predictions.
    None without them. Used by evaluate and by the learning-rate selection (dropbench.train.tuning)."""
    path = features.split_path(features_dir, HELD_OUT)
    if not path.exists():
        return None
    spec = tasks.get_task(task)
    split = features.load(path)
    predicted = predict(model, split, device, eval_batch_size, spec.is_regression, f"eval {task}/{HELD_OUT}")
    scores = {name: float(value) for name, value in metrics.compute(task, predicted, split.labels).items()}
    clean = {name: value if math.isfinite(value) else None for name, value in scores.items()}
    return {"metrics": clean, "task_score": task_score(task, clean), "rows": len(split),
            "predictions": (predicted, split.labels)}


def task_score(task: str, scores: dict) -> float | None:
    """One number per task, as the GLUE leaderboard averages it: the mean of the task's official metrics
    (None when one is undefined)."""
    values = list(scores.values())
    return None if any(v is None for v in values) else sum(values) / len(values)


def cell_status(scores: dict, distinct_predictions: dict) -> tuple[str, dict]:
    """``degenerate`` when the model predicts one value on a dev split, else ``ok``; and the metrics with
    undefined values (NaN, e.g. the correlation of a constant prediction) as None, never NaN in JSON."""
    status = DEGENERATE if min(distinct_predictions.values()) <= 1 else OK
    clean = {name: value if math.isfinite(value) else None for name, value in scores.items()}
    if status == OK and None in clean.values():
        raise ValueError(f"undefined metric although the model predicts several values: {scores}")
    return status, clean


def pruning_info(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "pruning.json"
    if path.exists():
        return json.loads(path.read_text())
    layers = layer_drop.num_layers(AutoConfig.from_pretrained(model_dir))
    return {"strategy": "none", "k": 0, "dropped": [], "kept": list(range(layers)), "num_layers_before": layers, "num_layers_after": layers}


def trained_with(train_config: dict) -> dict:
    """The settings of a train log's ``config`` that decide the weights (job_params.TRAINED_KEYS)."""
    return {key: train_config[key] for key in TRAINED_KEYS if key in train_config}


def write_cell_metrics(cell: Cell, finetuned_dir, source_model_dir, features_dir, train_log, eval_batch_size: int,
                       out_path, predictions_path=None, tuning_choice=None) -> dict:
    """``tuning_choice``: the variant's learning-rate selection (config tuning, dropbench.train.tuning), copied
    into the record's ``tuning`` block."""
    pruned = pruning_info(source_model_dir)
    train = json.loads(Path(train_log).read_text())
    train_split = features.read_info(features_dir)["splits"]["train"]
    result = evaluate_cell(finetuned_dir, features_dir, cell.task, eval_batch_size)
    status, scores = cell_status(result["metrics"], result["distinct_predictions"])
    record = {
        **cell.as_dict(),
        "status": status,
        "task_score": task_score(cell.task, scores),
        "metrics": scores,
        "chance": result["chance"],
        "distinct_predictions": result["distinct_predictions"],
        "primary_metric": tasks.get_task(cell.task).primary_metric,
        "dropped_layers": pruned["dropped"],
        "kept_layers": pruned["kept"],
        # data-driven strategies: the split their layer scores came from; the [CLS] rule: its threshold
        **{key: pruned[key] for key in ("scored_on", "threshold") if key in pruned},
        "num_layers_pretrained": pruned["num_layers_before"],
        "num_layers": pruned["num_layers_after"],
        "parameters": result["parameters"],
        "train_rows": train_split["rows"],
        "train_rows_available": train_split["rows_available"],
        "dev_rows": result["dev_rows"],
        "train_seconds": train["train_seconds"],
        "train_device": train["device"],
        "eval_seconds": result["eval_seconds"],
        "stage_versions": STAGE_VERSIONS,
        "head": result["head"],
        # the commit and library versions that evaluated the cell (its fine-tune ran in the same environment
        # unless the workflow was updated in between: stage_versions say what the code was meant to produce)
        "environment": provenance.environment(),
    }
    if result["held_out"] is not None:  # scored on held-out train rows too (a separate split, never dev)
        record["held_out"] = result["held_out"]
    if "learning_rate" in train.get("config", {}):
        record["learning_rate"] = train["config"]["learning_rate"]
    # what the fine-tune trained with (its train log's settings): planning compares it with the config
    record["trained_with"] = trained_with(train.get("config", {}))
    if tuning_choice is not None:
        from dropbench.train.tuning import read_choice

        record["tuning"] = read_choice(tuning_choice)
    fit = convergence.cell_fit(train.get("fit"), result["dev_losses"])
    if fit is not None:
        record["fit"] = fit
    check_record(record, out_path)
    if predictions_path is not None:  # written before the metrics, which mark the cell complete
        record["predictions_sha256"] = predictions.save(predictions_path, result["predictions"], cell=cell)
    write_json(out_path, record)
    return record
