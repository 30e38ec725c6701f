"""The ``exports_report`` step: ``reports/exports.md`` and ``.csv``, one row per exported cell and runtime
(torch, ONNX Runtime fp32, ONNX Runtime int8): dev score, change from torch, size on disk, latency and
speed-up against the unpruned torch model timed beside it (dropbench.export.exports, dropbench.export.export_latency)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dropbench.runtime.atomic import atomic_file
from dropbench.plan.cells import Cell

# Each exported cell's runtimes (dropbench.export.exports writes them); here so that the report needs no torch.
RUNTIMES = ("torch", "onnx_fp32", "onnx_int8")

COLUMNS = ["model", "variant", "task", "seed", "runtime", "task_score", "score_change_vs_torch", "megabytes",
           "latency_ms", "speedup_vs_full_torch", "max_abs_logit_diff", "prediction_agreement", "latency_converged"]


def rows(export_records, latency_records) -> pd.DataFrame:
    """One row per (exported cell, runtime); scores x 100."""
    out = []
    for export_path, latency_path in zip(export_records, latency_records):
        export = json.loads(Path(export_path).read_text())
        latency = json.loads(Path(latency_path).read_text())
        cell = Cell.of(export["cell"])
        named = {"model": cell.model, "variant": cell.variant, "task": cell.task}
        if latency["export"] != named:
            raise ValueError(f"{latency_path} times {latency['export']}, not {named} of {export_path}")
        torch_score = export["runtimes"]["torch"]["task_score"]
        for runtime in RUNTIMES:
            measured, timed = export["runtimes"][runtime], latency["runtimes"][runtime]
            score = measured["task_score"]
            out.append({
                **named,
                "seed": cell.seed,
                "runtime": runtime,
                "task_score": None if score is None else 100 * score,
                "score_change_vs_torch": None if score is None or torch_score is None else 100 * (score - torch_score),
                "megabytes": measured["bytes"] / 1e6,
                "latency_ms": timed["latency_ms"],
                "speedup_vs_full_torch": timed["speedup_vs_full_torch"],
                "max_abs_logit_diff": measured.get("max_abs_logit_diff"),
                "prediction_agreement": measured.get("prediction_agreement"),
                "latency_converged": latency["converged"],
            })
    return pd.DataFrame(out, columns=COLUMNS)


def markdown(table: pd.DataFrame, protocol: dict | None) -> str:
    shown = table.rename(columns={"task_score": "dev score x100", "score_change_vs_torch": "change vs torch",
                                  "megabytes": "MB on disk", "latency_ms": "latency (ms)",
                                  "speedup_vs_full_torch": "speed-up vs full torch",
                                  "max_abs_logit_diff": "max |logit diff|", "prediction_agreement": "same prediction",
                                  "latency_converged": "timing at its floor"})
    timing = ("" if protocol is None else
              f" Latency: batch {protocol['batch_size']} x {protocol['seq_len']} tokens, {protocol['threads']} thread, "
              f"CPU time of the thread, the floor of the {protocol['agree']} fastest passes.")
    return (
        "# Exported models\n\n"
        "Each exported cell (config `export`: one seed's fine-tune, not the mean over seeds) in the runtimes it ships in: "
        "torch (the Hugging Face folder), ONNX Runtime fp32 and ONNX Runtime int8 (dynamic quantization of the weights). "
        "Dev scores use the task's official metrics on its full dev split (the mean of them where a task has two, x 100); "
        "`change vs torch` is what the runtime costs on top of dropping layers. `max |logit diff|` and `same prediction` "
        "compare each ONNX model with torch on every dev row. The speed-up divides the unpruned torch encoder's latency, "
        f"timed beside each runtime in the same job, by the runtime's.{timing}\n\n"
        + shown.to_markdown(index=False, floatfmt=".4g") + "\n"
    )


def write_report(export_records, latency_records, csv_path, md_path) -> pd.DataFrame:
    table = rows(export_records, latency_records)
    protocol = json.loads(Path(latency_records[0]).read_text())["protocol"] if latency_records else None
    with atomic_file(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_file(md_path) as tmp:
        Path(tmp).write_text(markdown(table, protocol))
    return table
