"""The steps of the rules that run in envs/export.yaml (dropbench.steps): exports and their latency."""

from __future__ import annotations

from dropbench.steps import run_step


def run(job) -> None:
    run_step(job, STEPS)


def export_cell(job) -> None:
    """evaluation.batch_size does not change the scores: read from the config, not params."""
    from dropbench.export.exports import export_cell as export

    export(
        publish_dir=job.input.publish,
        metrics_json=job.input.metrics,
        features_dir=job.input.features,
        out=dict(job.output.items()),
        eval_batch_size=job.config["evaluation"]["batch_size"],
        params=job.params.job,
    )


def measure_export_latency(job) -> None:
    from pathlib import Path

    from dropbench.plan.cells import variant_name
    from dropbench.export.export_latency import measure_export

    w = job.wildcards
    measure_export(Path(job.input.onnx).parent, job.input.full_model, job.params.protocol, job.output[0],
                   {"model": w.model, "variant": variant_name(w.strategy, w.k), "task": w.task})


STEPS = {"export_cell": export_cell, "measure_export_latency": measure_export_latency}
