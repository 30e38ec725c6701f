"""The step of the rule that runs in envs/tracking.yaml (dropbench.steps): a cell logged as an MLflow run."""

from __future__ import annotations

from dropbench.steps import run_step


def run(job) -> None:
    run_step(job, STEPS)


def track_cell(job) -> None:
    from dropbench.export.tracking import log_cell

    log_cell(
        metrics_json=job.input.metrics,
        card_dir=job.input.card,
        train_log_json=job.params.train_log,
        tracking_uri=job.params.tracking_uri,
        experiment=job.params.experiment,
        out_json=job.output[0],
    )


STEPS = {"track_cell": track_cell}
