"""Opt-in experiment tracking: every fine-tuned cell as one MLflow run (config ``tracking.mlflow``; rule
``track_cell`` in ``workflow/rules/tracking.smk``).

``log_cell`` reads a finished cell's ``metrics.json`` and logs, in one run of the configured experiment:

- params: the cell (``model``, ``strategy``, ``k``, ``task``, ``seed``) and what it was made with: ``head``,
  ``learning_rate``, the fine-tune's settings (``training.<key>``, from ``trained_with``), rows
  (``train_rows``, ``train_rows_available``, ``dev_rows.<split>``), depth and layers (``num_layers``,
  ``num_layers_pretrained``, ``dropped_layers``, ``kept_layers``, 0-based as in ``metrics.json``),
  ``parameters``, ``primary_metric``, ``train_device``, ``stage_versions.<stage>`` and, where present,
  ``threshold``, ``scored_on`` and ``tuning.{chosen,held_out_rows,seed}``;
- metrics: every dev metric named as in ``metrics.json`` (``accuracy``, ``validation_matched_accuracy``, ...),
  ``task_score``, ``chance.<metric>``, ``held_out.<metric>`` and ``held_out.task_score`` where the cell was
  scored on held-out train rows, ``train_seconds``, ``eval_seconds`` and the fit (``fit.train_loss``,
  ``fit.train_fit``, ``fit.trivial_loss``, ``fit.dev.<split>.loss`` / ``.fit``); an undefined (null) metric of a
  degenerate cell is left out (tag ``dropbench.status`` says ``degenerate``);
- ``train_loss``: the training loss of every optimizer step (the cell's ``train_log.json``), as a metric history
  with step = optimizer step from 1, which MLflow draws as the loss curve;
- artifacts: ``metrics.json``, ``train_log.json`` (where it still exists) and the model card,
  ``model_card/README.md`` (the card only; the weights stay in the cell's ``publish/`` folder);
- tags: ``dropbench.cell`` (``<model>/<strategy>-k<k>/<task>/seed<seed>``), ``dropbench.metrics_sha256`` (the
  digest of the exact ``metrics.json`` bytes), ``dropbench.run_format``, ``dropbench.current`` (``true`` on the
  cell's newest run), ``dropbench.status`` and ``dropbench.underfit``.

No cell has figures of its own (the grid's figures under ``reports/figures/`` show every cell and change with
any of them); the loss curve is the metric history.

Logging twice is avoided by the cell's identity: before creating a run, the experiment is searched for
finished runs tagged with the cell. One with the same ``metrics.json`` digest (and run format) is the
cell's run: no run is created; only its model-card artifact is written again (the card changes with
``results/stats.csv``, e.g. when another seed of the variant finishes). A cell whose ``metrics.json`` changed
(re-made with other settings, or re-evaluated) gets a new run, and the earlier runs of the cell are tagged
``dropbench.current = false``: the history stays, and ``tags."dropbench.current" = 'true'`` selects the grid
as it is now. A run that failed part-way (status FAILED) is never reused.

mlflow is imported inside the functions that log, never at module level: a config without ``tracking``
imports no mlflow (tests/test_tracking.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from dropbench.runtime.atomic import write_json
from dropbench.plan.cells import Cell
from dropbench.plan.records import read_cell_metrics

log = logging.getLogger(__name__)

# Part of what makes a run the cell's run: bump it when what a run holds changes, so that every cell is logged
# again (as a new run; the old one is tagged dropbench.current = false).
RUN_FORMAT = 1
CELL_TAG = "dropbench.cell"
DIGEST_TAG = "dropbench.metrics_sha256"
FORMAT_TAG = "dropbench.run_format"
CURRENT_TAG = "dropbench.current"
LOSS_HISTORY = "train_loss"
CARD_ARTIFACT_DIR = "model_card"
# Tracking URI schemes taken as they are (a server, Databricks, a database), and the local stores whose
# relative paths are the user's (relative to the working directory).
REMOTE_SCHEMES = ("http", "https", "databricks", "postgresql", "mysql", "mssql")
LOCAL_SCHEMES = ("sqlite", "file")
# MLflow 3 refuses the filesystem store (file:) unless this is set (its "maintenance mode").
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call (params: 100)
MAX_PARAMS = 100


def uri_problem(uri, environ=os.environ) -> str | None:
    """Why ``uri`` is not a tracking URI dropbench can log to, or None (config_check)."""
    if not isinstance(uri, str) or not uri.strip():
        return "a non-empty string"
    scheme = (urlparse(uri).scheme or uri).lower().split("+")[0]  # postgresql+psycopg2://..., databricks
    if scheme == "sqlite":
        path = _sqlite_path(uri)
        if path is None or path in ("", ":memory:"):
            return "a sqlite database file, e.g. sqlite:///mlflow.db (relative to the working directory) or sqlite:////abs/path/mlflow.db"
        return None
    if scheme == "file":
        if environ.get(ALLOW_FILE_STORE, "").lower() not in ("true", "1"):
            return (f"a database or server URI: MLflow 3 refuses the filesystem store ({uri}) unless "
                    f"{ALLOW_FILE_STORE}=true; use e.g. sqlite:///mlflow.db")
        return None
    if scheme in REMOTE_SCHEMES:
        return None
    return (f"a URI of scheme {', '.join(LOCAL_SCHEMES + REMOTE_SCHEMES)}, e.g. sqlite:///mlflow.db or "
            "http://localhost:5000 (a plain path is not one)")


def _sqlite_path(uri: str) -> str | None:
    prefix = "sqlite:///"
    return uri[len(prefix):] if uri.lower().startswith(prefix) else None


def resolve_uri(uri: str, cwd: str | Path | None = None) -> str:
    """``uri`` with a relative sqlite or file store path made absolute against ``cwd`` (the working directory of
    the run, i.e. the user's), so the marker records where the runs are; other URIs unchanged."""
    cwd = Path(cwd or os.getcwd())
    path = _sqlite_path(uri)
    if path is not None:
        return uri if path.startswith("/") else f"sqlite:///{(cwd / path).resolve()}"
    parsed = urlparse(uri)
    if parsed.scheme.lower() == "file":
        local = parsed.path if not parsed.netloc else f"{parsed.netloc}{parsed.path}"
        return uri if local.startswith("/") else (cwd / local).resolve().as_uri()
    return uri


def cell_name(cell: dict) -> str:
    return Cell.of(cell).name


def run_params(record: dict) -> dict[str, str]:
    """The run's params from a metrics record (strings, as MLflow stores them)."""
    params = {key: record[key] for key in ("model", "strategy", "k", "task", "seed")}
    for key in ("head", "learning_rate", "train_rows", "train_rows_available", "num_layers", "num_layers_pretrained",
                "parameters", "primary_metric", "train_device", "threshold", "scored_on"):
        if key in record:
            params[key] = record[key]
    params["dropped_layers"] = ",".join(map(str, record["dropped_layers"]))
    params["kept_layers"] = ",".join(map(str, record["kept_layers"]))
    for prefix, block in (("training", record.get("trained_with", {})), ("dev_rows", record["dev_rows"]),
                          ("stage_versions", record.get("stage_versions", {}))):
        params.update({f"{prefix}.{key}": value for key, value in block.items()})
    if "tuning" in record:
        params.update({f"tuning.{key}": record["tuning"][key] for key in ("chosen", "held_out_rows", "seed")})
    return {key: str(value) for key, value in params.items()}


def run_metrics(record: dict) -> dict[str, float]:
    """The run's metrics from a metrics record: every defined (non-null) value."""
    values = {**record["metrics"], "task_score": record["task_score"], "train_seconds": record["train_seconds"],
              "eval_seconds": record["eval_seconds"]}
    values.update({f"chance.{name}": value for name, value in record["chance"].items()})
    held_out = record.get("held_out")
    if held_out:
        values.update({f"held_out.{name}": value for name, value in held_out["metrics"].items()})
        values["held_out.task_score"] = held_out["task_score"]
    fit = record.get("fit")
    if fit:
        values.update({f"fit.{key}": fit[key] for key in ("train_loss", "train_fit", "trivial_loss")})
        for split, dev in fit["dev"].items():
            values.update({f"fit.dev.{split}.{key}": value for key, value in dev.items()})
    return {name: float(value) for name, value in values.items() if value is not None and not isinstance(value, bool)}


def run_tags(record: dict, digest: str) -> dict[str, str]:
    tags = {CELL_TAG: cell_name(record), DIGEST_TAG: digest, FORMAT_TAG: str(RUN_FORMAT), CURRENT_TAG: "true",
            "dropbench.status": record["status"]}
    if record.get("fit"):
        tags["dropbench.underfit"] = str(record["fit"]["underfit"]).lower()
    return tags


def loss_history(train_log_json) -> list[float]:
    """The training loss per optimizer step from a train log ([] where the log was deleted)."""
    path = Path(train_log_json)
    return list(json.loads(path.read_text()).get("losses", [])) if path.is_file() else []


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def store_lock(uri: str):
    """One writer at a time on a local store (several jobs may finish at once; a new sqlite database is created
    by the first): an exclusive lock on a file beside it. A server serializes its own writes."""
    import fcntl

    path = _sqlite_path(uri)
    if path is None and urlparse(uri).scheme.lower() == "file":
        path = urlparse(uri).path
    if path is None:
        yield
        return
    lock = Path(path).with_name(f".{Path(path).name}.dropbench-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def experiment_id(client, name: str) -> str:
    """The experiment ``name``, created if it does not exist (another job may create it at the same moment)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) or "
                             "name another in tracking.mlflow.experiment")
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def cell_runs(client, exp_id: str, cell: str) -> list:
    """Every active (not deleted) run of the experiment tagged with the cell, newest first."""
    from mlflow.entities import ViewType

    escaped = cell.replace("'", "\\'")
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=f"tags.`{CELL_TAG}` = '{escaped}'",
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def matching_run(runs: list, digest: str):
    """The finished run of these metrics (same digest and run format), or None."""
    for run in runs:
        tags = run.data.tags
        if (run.info.status == "FINISHED" and tags.get(DIGEST_TAG) == digest
                and tags.get(FORMAT_TAG) == str(RUN_FORMAT)):
            return run
    return None


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _log_new_run(client, exp_id: str, record: dict, digest: str, metrics_json: Path, card: Path | None,
                 train_log: Path, losses: list[float]) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, run_name=cell_name(record), tags=run_tags(record, digest))
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(key, value) for key, value in run_params(record).items()]
        for batch in _batches(params, MAX_PARAMS):
            client.log_batch(run_id, params=batch)
        metrics = [Metric(name, value, now, 0) for name, value in run_metrics(record).items()]
        metrics += [Metric(LOSS_HISTORY, float(loss), now, step) for step, loss in enumerate(losses, start=1)]
        for batch in _batches(metrics, MAX_BATCH):
            client.log_batch(run_id, metrics=batch)
        client.log_artifact(run_id, str(metrics_json))
        if train_log.is_file():
            client.log_artifact(run_id, str(train_log))
        if card is not None:
            client.log_artifact(run_id, str(card), CARD_ARTIFACT_DIR)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_cell(metrics_json, card_dir, train_log_json, tracking_uri: str, experiment: str, out_json=None) -> dict:
    """Log one cell as an MLflow run unless the experiment already holds the run of exactly this
    ``metrics.json``; write the marker ``out_json`` (run id, experiment, resolved tracking URI) atomically and
    return it. ``card_dir``: the cell's ``publish/`` folder (its README.md is logged); ``train_log_json``: the loss
    curve, read where it still exists. A relative local store is the working directory's, as are the artifacts of
    an experiment created on it (MLflow's default, ``mlruns/``)."""
    from mlflow.tracking import MlflowClient

    metrics_json, train_log = Path(metrics_json), Path(train_log_json)
    record = read_cell_metrics(metrics_json)
    digest = sha256_file(metrics_json)
    card = Path(card_dir) / "README.md" if card_dir else None
    card = card if card is not None and card.is_file() else None
    uri = resolve_uri(tracking_uri)
    cell = cell_name(record)
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        exp_id = experiment_id(client, experiment)
        runs = cell_runs(client, exp_id, cell)
        found = matching_run(runs, digest)
        if found is not None:
            run_id = found.info.run_id
            log.info("%s: already logged as run %s (same metrics.json); refreshing its model card", cell, run_id)
            if card is not None:
                client.log_artifact(run_id, str(card), CARD_ARTIFACT_DIR)
            if found.data.tags.get(CURRENT_TAG) != "true":
                client.set_tag(run_id, CURRENT_TAG, "true")
        else:
            run_id = _log_new_run(client, exp_id, record, digest, metrics_json, card, train_log,
                                  loss_history(train_log))
            log.info("%s: logged as run %s in experiment %r at %s", cell, run_id, experiment, uri)
        for run in runs:
            if run.info.run_id != run_id and run.data.tags.get(CURRENT_TAG) != "false":
                client.set_tag(run.info.run_id, CURRENT_TAG, "false")
    marker = {"cell": cell, "tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id, "run_id": run_id,
              "metrics_sha256": digest, "new_run": found is None}
    if out_json is not None:
        write_json(out_json, marker)
    return marker
