"""Opt-in MLflow tracking (dropbench.export.tracking, rule track_cell): one run per cell in a local sqlite store, found
again by the cell's identity, and no mlflow import without the `tracking` key."""

from __future__ import annotations

import ast
import copy
import json

import pytest
from workflow_runner import REPO

from dropbench.export import tracking

RECORD = {
    "model": "m", "strategy": "top", "k": 2, "task": "sst2", "seed": 3, "status": "ok", "task_score": 0.8,
    "metrics": {"accuracy": 0.8}, "chance": {"accuracy": 0.5}, "distinct_predictions": {"validation": 2},
    "primary_metric": "accuracy", "dropped_layers": [4, 5], "kept_layers": [0, 1, 2, 3], "num_layers_pretrained": 6,
    "num_layers": 4, "parameters": 1234, "train_rows": 100, "train_rows_available": 1000,
    "dev_rows": {"validation": 872}, "train_seconds": 12.5, "eval_seconds": 1.5, "train_device": "cpu",
    "head": "mean_pooling", "learning_rate": 2e-4, "stage_versions": {"finetune": 1, "evaluate": 1},
    "trained_with": {"batch_size": 16, "epochs": 3, "learning_rate": 2e-4, "seed": 3},
    "fit": {"train_loss": 0.2, "trivial_loss": 0.69, "train_fit": 0.29, "underfit": False, "underfit_above": 0.5,
            "dev": {"validation": {"loss": 0.4, "fit": 0.58}}},
    "held_out": {"metrics": {"accuracy": 0.75}, "task_score": 0.75, "rows": 300},
    "tuning": {"candidates": {"0.0001": 0.7, "0.0002": 0.75}, "chosen": 2e-4, "held_out_rows": 300, "seed": 0},
}
LOSSES = [0.7, 0.6, 0.45, 0.3, 0.21]
URI = "sqlite:///store/mlflow.db"  # relative: the working directory's (tmp_path)


def write_cell(root, record=RECORD, card="# the card\n"):
    cell = root / "cell"
    (cell / "publish").mkdir(parents=True, exist_ok=True)
    (cell / "metrics.json").write_text(json.dumps(record, indent=2))
    (cell / "train_log.json").write_text(json.dumps({"losses": LOSSES, "steps": len(LOSSES)}))
    (cell / "publish" / "README.md").write_text(card)
    return cell


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The working directory: the relative store and the new experiment's artifacts (mlruns/) are its."""
    monkeypatch.chdir(tmp_path)


def log(root, cell, experiment="exp", **kwargs):
    return tracking.log_cell(cell / "metrics.json", cell / "publish", cell / "train_log.json", URI, experiment, **kwargs)


def runs_of(marker, experiment="exp"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(marker["tracking_uri"])
    return client, client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_tracking_uris_are_checked_and_relative_stores_are_the_working_directorys(tmp_path):
    assert tracking.resolve_uri("sqlite:///a/mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/a/mlflow.db"
    assert tracking.resolve_uri("sqlite:////abs/mlflow.db", tmp_path) == "sqlite:////abs/mlflow.db"
    assert tracking.resolve_uri("file:mlruns", tmp_path) == (tmp_path / "mlruns").as_uri()
    assert tracking.resolve_uri("http://localhost:5000", tmp_path) == "http://localhost:5000"
    for good in ("sqlite:///mlflow.db", "http://host:5000", "https://host", "databricks", "postgresql+psycopg2://u@h/db"):
        assert tracking.uri_problem(good, environ={}) is None, good
    assert "sqlite:///mlflow.db" in tracking.uri_problem("mlruns", environ={})  # a plain path
    assert "database file" in tracking.uri_problem("sqlite:///:memory:", environ={})
    assert tracking.ALLOW_FILE_STORE in tracking.uri_problem("file:mlruns", environ={})
    assert tracking.uri_problem("file:mlruns", environ={tracking.ALLOW_FILE_STORE: "true"}) is None


def test_a_cell_is_one_run_with_its_params_metrics_loss_curve_and_artifacts(tmp_path):
    cell = write_cell(tmp_path)
    marker = log(tmp_path, cell, out_json=tmp_path / "marker.json")
    assert json.loads((tmp_path / "marker.json").read_text()) == marker
    assert marker["new_run"] and marker["tracking_uri"] == f"sqlite:///{tmp_path}/store/mlflow.db"
    assert (tmp_path / "mlruns" / marker["experiment_id"] / marker["run_id"] / "artifacts" / "metrics.json").is_file()
    client, runs = runs_of(marker)
    assert [run.info.run_id for run in runs] == [marker["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "m/top-k2/sst2/seed3"
    params = run.data.params
    assert {key: params[key] for key in ("model", "strategy", "k", "task", "seed")} == {
        "model": "m", "strategy": "top", "k": "2", "task": "sst2", "seed": "3"}
    assert params["training.batch_size"] == "16" and params["learning_rate"] == "0.0002"
    assert params["train_rows"] == "100" and params["dropped_layers"] == "4,5" and params["tuning.chosen"] == "0.0002"
    assert params["dev_rows.validation"] == "872" and params["stage_versions.finetune"] == "1"
    metrics = run.data.metrics
    assert metrics["accuracy"] == 0.8 and metrics["task_score"] == 0.8 and metrics["train_seconds"] == 12.5
    assert metrics["held_out.accuracy"] == 0.75 and metrics["held_out.task_score"] == 0.75
    assert metrics["chance.accuracy"] == 0.5 and metrics["fit.dev.validation.loss"] == 0.4
    history = client.get_metric_history(run.info.run_id, tracking.LOSS_HISTORY)
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(enumerate(LOSSES, start=1))
    assert run.data.tags[tracking.CELL_TAG] == "m/top-k2/sst2/seed3"
    assert run.data.tags[tracking.DIGEST_TAG] == tracking.sha256_file(cell / "metrics.json")
    assert run.data.tags[tracking.CURRENT_TAG] == "true" and run.data.tags["dropbench.underfit"] == "false"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"metrics.json", "train_log.json", "model_card"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model_card")] == ["model_card/README.md"]


def test_a_cell_logged_again_finds_its_run_and_a_changed_one_gets_a_new_run(tmp_path):
    from mlflow.artifacts import download_artifacts

    cell = write_cell(tmp_path)
    first = log(tmp_path, cell)
    write_cell(tmp_path, card="# the card, with the variant's interval\n")  # stats.csv changed: a new card
    again = log(tmp_path, cell)
    assert again["run_id"] == first["run_id"] and not again["new_run"]
    client, runs = runs_of(first)
    assert len(runs) == 1
    card = download_artifacts(run_id=first["run_id"], artifact_path="model_card/README.md", dst_path=str(tmp_path / "dl"),
                              tracking_uri=first["tracking_uri"])
    assert "interval" in open(card).read()  # the run's card is the current one

    remade = copy.deepcopy(RECORD)
    remade["metrics"]["accuracy"] = remade["task_score"] = 0.81
    write_cell(tmp_path, remade)
    second = log(tmp_path, cell)
    assert second["new_run"] and second["run_id"] != first["run_id"]
    _, runs = runs_of(first)
    current = {run.info.run_id: run.data.tags[tracking.CURRENT_TAG] for run in runs}
    assert current == {first["run_id"]: "false", second["run_id"]: "true"}

    write_cell(tmp_path, RECORD)  # back to the first metrics.json: its run again, no third run
    back = log(tmp_path, cell)
    _, runs = runs_of(first)
    assert back["run_id"] == first["run_id"] and len(runs) == 2
    assert {run.info.run_id: run.data.tags[tracking.CURRENT_TAG] for run in runs} == {
        first["run_id"]: "true", second["run_id"]: "false"}


def test_a_run_that_failed_part_way_is_not_taken_for_the_cells_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    cell = write_cell(tmp_path)
    real = MlflowClient.log_artifact

    def broken(self, run_id, local_path, artifact_path=None):
        raise OSError("disk full")

    monkeypatch.setattr(MlflowClient, "log_artifact", broken)
    with pytest.raises(OSError):
        log(tmp_path, cell)
    monkeypatch.setattr(MlflowClient, "log_artifact", real)
    marker = log(tmp_path, cell)
    _, runs = runs_of(marker)
    assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"] and marker["new_run"]


def test_only_dropbench_tracking_imports_mlflow_and_only_inside_functions():
    importers = {}
    for path in [*sorted((REPO / "src").rglob("*.py")), *sorted((REPO / "workflow").rglob("*.py")),
                 *sorted((REPO / "workflow").rglob("*.smk")), REPO / "Snakefile"]:
        text = path.read_text()
        if "mlflow" not in text:
            continue
        if path.suffix == ".py":
            tree = ast.parse(text)
            imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       and any("mlflow" in name for name in [getattr(node, "module", None) or "",
                                                              *(alias.name for alias in node.names)])]
            top_level = [node for node in imports if node in tree.body]
            assert not top_level, f"{path}: mlflow imported at module level"
            if imports:
                importers[path.relative_to(REPO).as_posix()] = len(imports)
        else:
            assert "import mlflow" not in text and "from mlflow" not in text, path
    assert set(importers) == {"src/dropbench/export/tracking.py"}
