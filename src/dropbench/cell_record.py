"""One metrics JSON per cell: scores, what was dropped, size, time and speed. Validated on write and read."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig

from dropbench import architectures, glue
from dropbench.atomic import write_json
from dropbench.evaluation import evaluate_cell
from dropbench.features import read_info
from dropbench.records import check_record


def task_score(task: str, metrics: dict) -> float:
    """One number per task, as the GLUE leaderboard averages it: the mean of the task's official metrics."""
    return sum(metrics.values()) / len(metrics)


def pruning_info(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "pruning.json"
    if path.exists():
        return json.loads(path.read_text())
    layers = architectures.num_layers(AutoConfig.from_pretrained(model_dir))
    return {"strategy": "none", "k": 0, "dropped": [], "kept": list(range(layers)), "num_layers_before": layers, "num_layers_after": layers}


def write_cell_metrics(cell: dict, finetuned_dir, source_model_dir, features_dir, train_log, eval_batch_size: int, latency_json, out_path) -> dict:
    pruned = pruning_info(source_model_dir)
    train = json.loads(Path(train_log).read_text())
    train_split = read_info(features_dir)["splits"]["train"]
    result = evaluate_cell(finetuned_dir, features_dir, cell["task"], eval_batch_size)
    inference = json.loads(Path(latency_json).read_text())  # measured once per architecture (dropbench.latency)
    record = {
        **cell,
        "task_score": task_score(cell["task"], result["metrics"]),
        "metrics": result["metrics"],
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
        "inference": inference,
    }
    check_record(record, out_path)
    write_json(out_path, record)
    return record
