"""One finished tiny grid with everything that leaves the workflow (issue 26): a model card for every cell
(rule model_card), exports of the top-1 cells (config export: ONNX fp32 and int8, checked, timed, tabulated,
drawn) and an MLflow run for every cell (config tracking, a sqlite store in the working directory). The unit
tests of each are in tests/test_model_card.py, test_exports.py and test_tracking.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from test_model_card import metrics_of_card
from tiny import tiny_config, write_config
from workflow_runner import REPO, planned_jobs, snakemake

from dropbench.train import heads
from dropbench.report import model_card
from dropbench.runtime import provenance
from dropbench.export import tracking


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """The tiny BERT with each head (native, mean_pooling), baseline and top-1 on SST-2, one seed; top-1 exported;
    every cell logged to a sqlite MLflow store in the working directory."""
    workdir = tmp_path_factory.mktemp("published")
    config = tiny_config(workdir, strategies=("top",), k=(1,))
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    tiny = config["models"]["tiny"]
    config["models"] = {"tiny": {**tiny, "note": "a tiny random BERT", "license": "mit"},
                        "tiny_mp": {**tiny, "head": "mean_pooling", "base_model": "org/tiny-bert"}}
    (workdir / "untracked.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    config["export"] = {"variants": ["top-k1"]}
    config["tracking"] = {"mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "tiny grid"}}
    write_config(workdir, config)
    plan = planned_jobs(workdir, ignore=())
    snakemake(workdir, "--cores", "2")
    return workdir, plan


# ------------------------------------------------------------------ model cards


@pytest.mark.slow
def test_every_cell_of_a_finished_grid_has_a_card_matching_its_metrics(finished_grid):
    from huggingface_hub import ModelCard

    workdir, plan = finished_grid
    assert plan["model_card"] == plan["evaluate"] == 4
    folders = sorted(workdir.glob("results/cells/*/*/*/seed*/publish"))
    assert len(folders) == 4
    for folder in folders:
        record = json.loads((folder.parent / "metrics.json").read_text())
        card = ModelCard.load(folder / "README.md")
        assert metrics_of_card(card) == record["metrics"]
        assert card.data.eval_results[0].dataset_config == "sst2"
        assert card.data.eval_results[0].dataset_split == "validation"
        dropped = ", ".join(str(layer + 1) for layer in record["dropped_layers"]) or "none"
        assert f"| dropped (1-based, 1 = lowest) | {dropped} |" in card.text
        assert "| seed | 1 |" in card.text and str(record["stage_versions"]["finetune"]) in card.text
        assert record["environment"]["commit"] == provenance.workflow_commit()  # what evaluated it (issue 23 item 7)
        assert f"evaluated at commit `{record['environment']['commit']}`" in card.text
        assert "n/a (one seed)" in card.text  # the variant's row of results/stats.csv, one seed
        if record["model"] == "tiny":
            assert card.data.license == "mit" and "a tiny random BERT" in card.text
        else:
            assert card.data.base_model == "org/tiny-bert" and "load_classifier" in card.text
        # what upload_folder publishes (its file filter, with the card's ignore pattern): plain files, model
        # files hard links to the cell's
        from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
        from huggingface_hub.utils import filter_repo_objects

        names = [path.name for path in folder.iterdir()]
        published = set(filter_repo_objects(names, ignore_patterns=[*model_card.UPLOAD_IGNORE, *DEFAULT_IGNORE_PATTERNS]))
        head_files = {"classifier_head.json", "classifier_head.safetensors"} if record["model"] == "tiny_mp" else set()
        assert published == {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                             "vocab.txt", *head_files}
        assert all(path.is_file() and not path.is_symlink() for path in folder.iterdir())
        for path in (folder.parent / "finetuned").iterdir():
            if not path.name.startswith("."):  # Snakemake's .snakemake_timestamp is each folder's own
                assert os.stat(folder / path.name).st_ino == os.stat(path).st_ino
        assert os.stat(folder / ".snakemake_timestamp").st_ino != os.stat(folder.parent / "finetuned/.snakemake_timestamp").st_ino


@pytest.mark.slow
def test_a_published_folder_loads_with_from_pretrained(finished_grid, one_thread):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    workdir, _ = finished_grid
    for model, head in (("tiny", heads.NATIVE), ("tiny_mp", heads.MEAN_POOLING)):
        folder = workdir / f"results/cells/{model}/top-k1/sst2/seed1/publish"
        tokenizer = AutoTokenizer.from_pretrained(folder)
        batch = tokenizer(["a good movie", "the plot was bad"], return_tensors="pt", padding=True)
        expected = heads.load_classifier(folder.parent / "finetuned").eval()
        with torch.no_grad():
            if head == heads.NATIVE:
                logits = AutoModelForSequenceClassification.from_pretrained(folder).eval()(**batch).logits
            else:
                assert AutoModel.from_pretrained(folder).config.num_hidden_layers == 3
                logits = heads.load_classifier(folder).eval()(**batch).logits
            assert torch.allclose(logits, expected(**batch).logits)


@pytest.mark.slow
def test_cards_are_cached_and_their_params_rerun_only_the_cards(finished_grid):
    workdir, _ = finished_grid
    assert planned_jobs(workdir, ignore=()) == {}
    text = (workdir / "config.yaml").read_text()
    config = yaml.safe_load(text)
    config["models"]["tiny"]["license"] = "apache-2.0"  # only the cards show it (and the exports and runs keep theirs)
    try:
        write_config(workdir, config)
        assert planned_jobs(workdir, ignore=()) == {"model_card": 2, "all": 1}
    finally:
        (workdir / "config.yaml").write_text(text)


# ------------------------------------------------------------------ exports


@pytest.mark.slow
def test_a_finished_grid_exports_each_chosen_cell_checked_and_timed(finished_grid, one_thread):
    workdir, plan = finished_grid
    assert plan["export_cell"] == plan["measure_export_latency"] == 2 and plan["exports_report"] == 1
    for model in ("tiny", "tiny_mp"):
        folder = workdir / f"exports/{model}/top-k1/sst2"
        record = json.loads((folder / "export.json").read_text())
        metrics = json.loads((workdir / f"results/cells/{model}/top-k1/sst2/seed1/metrics.json").read_text())
        assert record["cell"] == {"model": model, "strategy": "top", "k": 1, "task": "sst2", "seed": 1}
        assert record["runtimes"]["torch"]["metrics"] == metrics["metrics"]
        assert record["runtimes"]["onnx_fp32"]["max_abs_logit_diff"] <= 1e-4
        assert record["runtimes"]["onnx_fp32"]["prediction_agreement"] == 1.0
        assert set(record["runtimes"]["onnx_int8"]["metrics"]) == {"accuracy"}
        assert (folder / "hf/README.md").is_file()
        publish = workdir / f"results/cells/{model}/top-k1/sst2/seed1/publish"
        assert os.stat(folder / "hf/model.safetensors").st_ino == os.stat(publish / "model.safetensors").st_ino
        # Snakemake's timestamp of the folder is its own, not a link to the card folder's
        assert os.stat(folder / "hf/.snakemake_timestamp").st_ino != os.stat(publish / ".snakemake_timestamp").st_ino
        assert heads.load_classifier(folder / "hf").config.num_hidden_layers == 3
        latency = json.loads((folder / "latency.json").read_text())
        assert set(latency["runtimes"]) == {"torch", "onnx_fp32", "onnx_int8"}
        assert all(timed["latency_ms"] > 0 for timed in latency["runtimes"].values())
    table = pd.read_csv(workdir / "reports/exports.csv")
    assert len(table) == 6 and set(table["runtime"]) == {"torch", "onnx_fp32", "onnx_int8"}
    pareto = pd.read_csv(workdir / "reports/figures/pareto.csv")
    assert set(pareto.loc[pareto["kind"] == "export", "runtime"]) == {"onnx_fp32", "onnx_int8"}
    assert planned_jobs(workdir) == {}


@pytest.mark.slow
def test_without_export_no_export_job_is_planned(finished_grid):
    workdir, _ = finished_grid
    config_path = workdir / "config.yaml"
    text = config_path.read_text()
    try:
        config_path.write_text(text.split("export:")[0])
        result = snakemake(workdir, "-n", "--forceall")
        assert "export_cell" not in result.stdout and "exports_report" not in result.stdout
    finally:
        config_path.write_text(text)


# ------------------------------------------------------------------ MLflow tracking


def dry_run_imports(workdir, configfile) -> list[str]:
    """Plan the grid of ``configfile`` in a Python that reports, at exit, which of mlflow, onnx and onnxruntime
    it imported."""
    code = ("import atexit, json, sys; atexit.register(lambda: print('IMPORTED', json.dumps(sorted(m for m in sys.modules "
            "if m in ('mlflow', 'onnx', 'onnxruntime'))))); from snakemake.cli import main; main()")
    result = subprocess.run(
        [sys.executable, "-c", code, "-n", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(configfile)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "IMPORTED" in result.stdout and result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("IMPORTED", 1)[1].strip().splitlines()[0])


@pytest.mark.slow
def test_a_finished_grid_logs_one_run_per_cell_once(finished_grid):
    from mlflow.tracking import MlflowClient

    workdir, plan = finished_grid
    assert plan["track_cell"] == plan["evaluate"] == 4
    markers = sorted(workdir.glob("results/tracking/mlflow/*/*/sst2/seed1.json"))
    cells = {f"{model}/{variant}/sst2/seed1" for model in ("tiny", "tiny_mp") for variant in ("none-k0", "top-k1")}
    assert {f"{m.parent.parent.parent.name}/{m.parent.parent.name}/sst2/seed1" for m in markers} == cells
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny grid")

    def runs():
        return {run.data.tags[tracking.CELL_TAG]: run for run in client.search_runs([experiment.experiment_id])}

    logged = runs()
    assert set(logged) == cells and len(client.search_runs([experiment.experiment_id])) == 4
    for path in markers:
        marker = json.loads(path.read_text())
        run = logged[marker["cell"]]
        assert marker["run_id"] == run.info.run_id and marker["tracking_uri"] == f"sqlite:///{workdir}/mlflow.db"
        record = json.loads((workdir / f"results/cells/{marker['cell']}/metrics.json").read_text())
        assert run.data.metrics["accuracy"] == record["metrics"]["accuracy"]
        assert len(client.get_metric_history(run.info.run_id, tracking.LOSS_HISTORY)) == 4  # 32 rows, batch 8
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"metrics.json", "train_log.json", "model_card"}
        assert (workdir / "mlruns" / marker["experiment_id"] / run.info.run_id / "artifacts" / "model_card" / "README.md").is_file()

    assert planned_jobs(workdir, ignore=()) == {}
    # a rewritten card (results/stats.csv changed) re-logs and re-exports nothing: the cells are those of the runs
    assert planned_jobs(workdir, "--forcerun", "model_card", ignore=()) == {"model_card": 4, "all": 1}
    snakemake(workdir, "--cores", "2", "--forcerun", "track_cell")  # the jobs again: the same runs, none added
    assert {cell: run.info.run_id for cell, run in runs().items()} == {c: r.info.run_id for c, r in logged.items()}
    assert len(client.search_runs([experiment.experiment_id])) == 4


@pytest.mark.slow
def test_planning_imports_no_mlflow_or_onnx_with_or_without_tracking_and_export(finished_grid):
    workdir, _ = finished_grid
    assert dry_run_imports(workdir, workdir / "untracked.yaml") == []
    assert dry_run_imports(workdir, workdir / "config.yaml") == []
