"""One metrics JSON per cell: scores, what was dropped, size, time and speed. Validated on write and read."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import AutoConfig

from dropbench import architectures, glue, predictions
from dropbench.atomic import write_json
from dropbench.evaluation import evaluate_cell
from dropbench.features import read_info
from dropbench.job_params import STAGE_VERSIONS
from dropbench.records import check_record


OK, DEGENERATE = "ok", "degenerate"


def task_score(task: str, metrics: dict) -> float | None:
    """One number per task, as the GLUE leaderboard averages it: the mean of the task's official metrics
    (None when one is undefined)."""
    values = list(metrics.values())
    return None if any(v is None for v in values) else sum(values) / len(values)


def cell_status(metrics: dict, distinct_predictions: dict) -> tuple[str, dict]:
    """``degenerate`` when the model predicts one value on a dev split, else ``ok``; and the metrics with
    undefined values (NaN, e.g. the correlation of a constant prediction) as None, never NaN in JSON."""
    status = DEGENERATE if min(distinct_predictions.values()) <= 1 else OK
    clean = {name: value if math.isfinite(value) else None for name, value in metrics.items()}
    if status == OK and None in clean.values():
        raise ValueError(f"undefined metric although the model predicts several values: {metrics}")
    return status, clean


def pruning_info(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "pruning.json"
    if path.exists():
        return json.loads(path.read_text())
    layers = architectures.num_layers(AutoConfig.from_pretrained(model_dir))
    return {"strategy": "none", "k": 0, "dropped": [], "kept": list(range(layers)), "num_layers_before": layers, "num_layers_after": layers}


def write_cell_metrics(cell: dict, finetuned_dir, source_model_dir, features_dir, train_log, eval_batch_size: int,
                       out_path, predictions_path=None) -> dict:
    pruned = pruning_info(source_model_dir)
    train = json.loads(Path(train_log).read_text())
    train_split = read_info(features_dir)["splits"]["train"]
    result = evaluate_cell(finetuned_dir, features_dir, cell["task"], eval_batch_size)
    status, scores = cell_status(result["metrics"], result["distinct_predictions"])
    record = {
        **cell,
        "status": status,
        "task_score": task_score(cell["task"], scores),
        "metrics": scores,
        "chance": result["chance"],
        "distinct_predictions": result["distinct_predictions"],
        "primary_metric": glue.get_task(cell["task"]).primary_metric,
        "dropped_layers": pruned["dropped"],
        "kept_layers": pruned["kept"],
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
    }
    check_record(record, out_path)
    if predictions_path is not None:  # written before the metrics, which mark the cell complete
        predictions.save(predictions_path, result["predictions"])
    write_json(out_path, record)
    return record
