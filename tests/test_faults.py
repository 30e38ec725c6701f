"""Faults: a killed job resumes, corrupt results are recomputed (never deleted while planning), one failing cell does not stop the others."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import save_file
from tiny import build_tiny_bert, tiny_config, write_config, write_tiny_tasks
from workflow_runner import REPO, SNAKEMAKE, planned_jobs, snakemake

from dropbench.plan import integrity
from dropbench.runtime import failures
from dropbench.plan.records import CorruptResultError, read_cell_metrics
from dropbench.data.tasks import GlueDataError
from dropbench.plan.grid import Cell
from dropbench.data.prepare import prepare_task

SST2 = "results/cells/tiny/none-k0/sst2/seed1"
STSB = "results/cells/tiny/none-k0/stsb/seed1"
TARGETS = (f"{SST2}/metrics.json", f"{STSB}/metrics.json")


# ------------------------------------------------------------------ safetensors and metrics checks


def tensors_file(path):
    save_file({"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, 2)}, str(path))
    return path


def test_a_whole_safetensors_file_passes(tmp_path):
    assert integrity.safetensors_problem(tensors_file(tmp_path / "w.safetensors")) is None


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[:-1], "truncated or padded"),
    (lambda data: data + b"\0", "truncated or padded"),
    (lambda data: data[:5], "shorter than the 8-byte header length"),
    (lambda data: data[:40], "bad header length"),
    (lambda data: data[:8] + b"#" + data[9:], "header is not valid JSON"),
    (lambda data: b"PK\x03\x04" + data[4:], "bad header length"),  # e.g. a zip/pickle renamed to .safetensors
])
def test_damaged_safetensors_files_are_detected(tmp_path, damage, reason):
    path = tensors_file(tmp_path / "w.safetensors")
    path.write_bytes(damage(path.read_bytes()))
    assert reason in integrity.safetensors_problem(path)


def valid_record(cell: Cell | None = None, **changes) -> dict:
    """A complete metrics record, of ``cell`` if given (else tiny/top-k1/sst2/seed1)."""
    identity = {"model": "tiny", "strategy": "top", "k": 1, "task": "sst2", "seed": 1} if cell is None else dict(cell.__dict__)
    return {**identity, "status": "ok", "task_score": 0.5,
        "metrics": {"accuracy": 0.5}, "chance": {"accuracy": 0.5}, "distinct_predictions": {"validation": 2},
        "primary_metric": "accuracy", "dropped_layers": [3], "kept_layers": [0, 1, 2],
        "num_layers_pretrained": 4, "num_layers": 3, "parameters": 100, "train_rows": 32,
        "train_rows_available": 32, "dev_rows": {"validation": 32}, "train_seconds": 1.0, "eval_seconds": 1.0,
        **changes,
    }


@pytest.mark.parametrize("text", [
    json.dumps(valid_record()),
    json.dumps(valid_record())[:-20],
    json.dumps({k: v for k, v in valid_record().items() if k != "metrics"}),
    json.dumps({**valid_record(), "task_score": "high"}),
    "",
])
def test_metrics_check_agrees_with_read_cell_metrics(tmp_path, text):
    path = tmp_path / "metrics.json"
    path.write_text(text)
    try:
        read_cell_metrics(path)
        readable = True
    except CorruptResultError:
        readable = False
    assert (integrity.read_metrics_checked(path)[1] is None) == readable


def test_find_damaged_names_corrupt_results_and_the_damaged_inputs_of_cells_to_recompute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = [Cell("tiny", "none", 0, "sst2", 1), Cell("tiny", "top", 1, "sst2", 1)]
    valid, pending = cells
    for cell in cells:
        (tmp_path / cell.dir / "finetuned").mkdir(parents=True)
        (tmp_path / cell.dir / "finetuned" / "config.json").write_text("{}")
        tensors_file(tmp_path / cell.dir / "finetuned" / "model.safetensors")
        (tmp_path / cell.metrics).write_text(json.dumps(valid_record(cell)))
    (tmp_path / pending.metrics).write_text(json.dumps(valid_record(pending))[:-1])
    for cell in cells:  # both fine-tuned models damaged; only the pending cell's counts
        weights = tmp_path / cell.dir / "finetuned" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4])
    pruned = tmp_path / "results/models/tiny/pruned/top-k1/any"
    pruned.mkdir(parents=True)
    (pruned / "config.json").write_text("{}")
    tensors_file(pruned / "model.safetensors")
    (pruned / "pruning.json").write_text('{"dropped": [3], "ke')  # truncated
    pretrained = tmp_path / "results/models/tiny/pretrained"
    pretrained.mkdir(parents=True)
    (pretrained / "config.json").write_text("{}")
    tensors_file(pretrained / "model.safetensors")
    sources = {"tiny": {"kind": "local", "path": "x", "sha256": "0" * 64}}  # not the staged file's hash

    problems = integrity.find_damaged(cells, data_driven=[], sources=sources)
    found = {str(p.path): p.reason for p in problems}
    assert set(found) == {pending.metrics, f"{pending.dir}/finetuned", "results/models/tiny/pruned/top-k1/any",
                          "results/models/tiny/pretrained"}
    assert found[pending.metrics].startswith("truncated or corrupt JSON")
    assert found[f"{pending.dir}/finetuned"].startswith("model.safetensors: truncated or padded")
    assert found["results/models/tiny/pruned/top-k1/any"].startswith("pruning.json: truncated or corrupt JSON")
    assert found["results/models/tiny/pretrained"].endswith(f"the config says {'0' * 64}")
    # the valid cell's damaged fine-tuned model is left alone, and nothing was changed on disk
    assert (tmp_path / valid.dir / "finetuned" / "model.safetensors").exists()
    assert integrity.find_damaged([valid], data_driven=[]) == []


def write_cell(tmp_path, cell, prediction, labels, bound: bool = True, **changes):
    """A finished cell as evaluate writes it: predictions naming the cell, metrics recording their digest
    (``bound``), or as it wrote them before issue 24 (neither)."""
    import numpy as np

    from dropbench.evaluate import predictions

    (tmp_path / cell.dir).mkdir(parents=True, exist_ok=True)
    digest = predictions.save(tmp_path / cell.dir / "predictions.npz", {"validation": (np.array(prediction), np.array(labels))},
                              cell=cell.__dict__ if bound else None)
    if bound:
        changes["predictions_sha256"] = digest
    (tmp_path / cell.metrics).write_text(json.dumps(valid_record(cell, dev_rows={"validation": len(labels)}, **changes)))


def test_damaged_predictions_under_valid_metrics_recompute_the_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cell = Cell("tiny", "none", 0, "sst2", 1)
    write_cell(tmp_path, cell, [0, 1, 1], [0, 1, 0], bound=False)
    path = tmp_path / cell.dir / "predictions.npz"
    assert integrity.find_damaged([cell], data_driven=[]) == []
    data = bytearray(path.read_bytes())
    data[100:140] = b"x" * 40
    path.write_bytes(bytes(data))
    problems = integrity.find_damaged([cell], data_driven=[])
    assert [str(p.path) for p in problems] == [cell.metrics] and "predictions" in problems[0].reason


def test_predictions_of_another_cell_or_written_again_recompute_the_cell(tmp_path, monkeypatch):
    import numpy as np

    from dropbench.evaluate import predictions

    monkeypatch.chdir(tmp_path)
    a, b = Cell("tiny", "none", 0, "sst2", 1), Cell("tiny", "none", 0, "sst2", 2)
    write_cell(tmp_path, a, [0, 1, 1], [0, 1, 0])
    write_cell(tmp_path, b, [1, 1, 1], [0, 1, 0])
    assert integrity.find_damaged([a, b], data_driven=[]) == []
    # swapped: each file names the other cell
    a_file, b_file = tmp_path / a.dir / "predictions.npz", tmp_path / b.dir / "predictions.npz"
    a_bytes, b_bytes = a_file.read_bytes(), b_file.read_bytes()
    a_file.write_bytes(b_bytes)
    b_file.write_bytes(a_bytes)
    found = {str(p.path): p.reason for p in integrity.find_damaged([a, b], data_driven=[])}
    assert set(found) == {a.metrics, b.metrics}
    assert "predictions of another cell (tiny/none-k0/sst2/seed2, not tiny/none-k0/sst2/seed1)" in found[a.metrics]
    # written again with the library's own save (valid checksum, no cell): not the file evaluate wrote
    b_file.write_bytes(b_bytes)
    predictions.save(a_file, {"validation": (np.array([0, 1, 0]), np.array([0, 1, 0]))})
    found = {str(p.path): p.reason for p in integrity.find_damaged([a, b], data_driven=[])}
    assert list(found) == [a.metrics] and "is not the file this cell's evaluate wrote" in found[a.metrics]
    # the statistics refuse it too, naming the file
    from dropbench.report.significance import load_runs

    with pytest.raises(CorruptResultError, match=f"damaged result {a.dir}/predictions.npz"):
        load_runs([a_file.relative_to(tmp_path), b_file.relative_to(tmp_path)])


def test_predictions_with_other_rows_or_labels_and_a_valid_checksum_are_found(tmp_path, monkeypatch):
    """Records made before predictions were bound to their cell (no cell, no recorded digest) are trusted,
    but their rows must still agree with metrics.json and the prepared dev labels."""
    import numpy as np

    from dropbench.evaluate import predictions

    monkeypatch.chdir(tmp_path)
    cell = Cell("tiny", "none", 0, "sst2", 1)
    write_cell(tmp_path, cell, [0, 1, 1], [0, 1, 0], bound=False)
    path = tmp_path / cell.dir / "predictions.npz"
    features = tmp_path / "results/features/tiny/sst2"
    features.mkdir(parents=True)
    np.savez(features / "validation.npz", labels=np.array([0, 1, 0]))
    assert integrity.find_damaged([cell], data_driven=[]) == []
    predictions.save(path, {"validation": (np.array([0, 1]), np.array([0, 1]))})
    found = {str(p.path): p.reason for p in integrity.find_damaged([cell], data_driven=[])}  # (and the stand-in features)
    assert "split validation has 2 rows, metrics.json counts 3" in found[cell.metrics]
    predictions.save(path, {"validation": (np.array([0, 1, 1]), np.array([1, 1, 1]))})
    found = {str(p.path): p.reason for p in integrity.find_damaged([cell], data_driven=[])}
    assert "other rows or labels than results/features/tiny/sst2/validation.npz" in found[cell.metrics]


def test_a_truncated_latency_record_is_found_naming_the_file(tmp_path, monkeypatch):
    from dropbench.report import aggregate

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "results/latency/tiny/top-k1/any.json"
    path.parent.mkdir(parents=True)
    record = {"architecture": {"model": "tiny", "strategy": "top", "k": 1, "scope": "any"}, "latency_ms": 1.0, "parameters": 5}
    path.write_text(json.dumps(record))
    latency = ["results/latency/tiny/top-k1/any.json"]
    assert integrity.find_damaged([], data_driven=[], latency=latency) == []
    path.write_text(json.dumps(record)[:-25])
    [problem] = integrity.find_damaged([], data_driven=[], latency=latency)
    assert str(problem.path) == latency[0] and problem.reason.startswith("truncated or corrupt JSON")
    with pytest.raises(CorruptResultError, match="damaged result results/latency/tiny/top-k1/any.json"):
        aggregate.read_latency(latency)
    other = {**record, "architecture": {**record["architecture"], "k": 2}}
    path.write_text(json.dumps(other))
    [problem] = integrity.find_damaged([], data_driven=[], latency=latency)
    assert "not the one its path names" in problem.reason


def test_a_record_of_other_settings_forces_its_fine_tune_and_one_without_them_is_trusted(tmp_path, monkeypatch):
    from dropbench.plan import job_params

    monkeypatch.chdir(tmp_path)
    cell = Cell("tiny", "top", 1, "sst2", 1)
    training = {"epochs": 1, "learning_rate": 2e-5, "batch_size": 8, "warmup_ratio": 0.0, "weight_decay": 0.0,
                "max_grad_norm": 1.0, "group_by_length": True}
    asked = job_params.trained_settings(job_params.finetune_params(training, 1), 1)
    write_cell(tmp_path, cell, [0, 1], [0, 1], trained_with={**asked, "learning_rate": 1e-4, "checkpoint_minutes": 5})
    expected = {"training": asked, "dropped": [3]}
    [problem] = integrity.find_damaged([cell], data_driven=[], expected=lambda c: expected)
    assert str(problem.path) == f"{cell.dir}/finetuned"
    assert problem.reason == f"{cell.metrics} records training learning_rate 0.0001, the config asks 2e-05"
    write_cell(tmp_path, cell, [0, 1], [0, 1], trained_with={**asked, "epochs": 1.0})  # another spelling
    assert integrity.find_damaged([cell], data_driven=[], expected=lambda c: expected) == []
    write_cell(tmp_path, cell, [0, 1], [0, 1])  # made before trained_with was recorded: unknown, trusted
    assert integrity.find_damaged([cell], data_driven=[], expected=lambda c: expected) == []
    [problem] = integrity.find_damaged([cell], data_driven=[], expected=lambda c: {**expected, "dropped": [0]})
    assert str(problem.path) == "results/models/tiny/pruned/top-k1/any" and "config drops [0]" in problem.reason
    write_cell(tmp_path, cell, [0, 1], [0, 1], stage_versions={**job_params.STAGE_VERSIONS, "finetune": 0})
    [problem] = integrity.find_damaged([cell], data_driven=[], expected=lambda c: expected)
    assert str(problem.path) == f"{cell.dir}/finetuned" and "finetune version 0" in problem.reason
    other = Cell("tiny", "top", 1, "sst2", 2)
    (tmp_path / other.dir).mkdir(parents=True)
    (tmp_path / other.metrics).write_bytes((tmp_path / cell.metrics).read_bytes())  # a copy of another cell's record
    [problem] = integrity.find_damaged([other], data_driven=[])
    assert str(problem.path) == f"{other.dir}/finetuned" and "record of another cell" in problem.reason
    # features prepared under another max_length: prepare_task and everything below
    write_cell(tmp_path, cell, [0, 1], [0, 1], trained_with=asked)
    features = tmp_path / "results/features/tiny/sst2"
    features.mkdir(parents=True)
    source = {"kind": "local", "path": "glue/SST-2"}
    (features / "info.json").write_text(json.dumps({"task": "sst2", "source": source, "max_length": 32, "splits": {}}))
    asks = {**expected, "features": {"source": {"path": "glue/SST-2", "kind": "local"}, "max_length": 32}}
    assert integrity.find_damaged([cell], data_driven=[], expected=lambda c: asks) == []
    asks["features"]["max_length"] = 64
    problem = integrity.find_damaged([cell], data_driven=[], expected=lambda c: asks)[0]  # (then the stand-in's own defects)
    assert str(problem.path) == "results/features/tiny/sst2" and "max_length 32, the config asks 64" in problem.reason
    # features with held-out train rows (config tuning) and a record without their scores: evaluate again
    held = {"rows": 4, "seed": 0}
    (features / "info.json").write_text(json.dumps({"task": "sst2", "source": source, "max_length": 32, "splits": {},
                                                    "held_out": held}))
    asks = {**expected, "features": {"source": source, "max_length": 32, "held_out": held}}
    problem = integrity.find_damaged([cell], data_driven=[], expected=lambda c: asks)[0]
    assert str(problem.path) == cell.metrics and "no scores on the held-out train rows" in problem.reason


def test_garbage_inside_a_features_archive_with_an_intact_index_is_found(tmp_path):
    import numpy as np

    np.savez(tmp_path / "train.npz", input_ids=np.arange(4000, dtype=np.int32))
    (tmp_path / "info.json").write_text(json.dumps({"splits": {"train": {}}}))
    assert "padding_side" in integrity.features_problem(tmp_path)  # staged before the side was recorded
    (tmp_path / "info.json").write_text(json.dumps({"splits": {"train": {}}, "padding_side": "right"}))
    assert integrity.features_problem(tmp_path) is None
    data = bytearray((tmp_path / "train.npz").read_bytes())
    data[200:260] = b"x" * 60  # inside the member's data; the zip directory at the end stays intact
    (tmp_path / "train.npz").write_bytes(bytes(data))
    assert "train.npz" in integrity.features_problem(tmp_path)


def test_failure_record_is_written_on_error_and_cleared_on_success(tmp_path):
    cell = Cell("tiny", "top", 2, "stsb", 7)
    with pytest.raises(ValueError):
        with failures.failure_record(cell, "finetune", root=tmp_path):
            raise ValueError("out of memory")
    path = tmp_path / "tiny" / "top-k2" / "stsb" / "seed7.json"
    assert json.loads(path.read_text()) == {**cell.as_dict(), "rule": "finetune", "error": "ValueError: out of memory"}
    with failures.failure_record(cell, "evaluate", root=tmp_path):
        pass
    assert not path.exists()


# ------------------------------------------------------------------ a real run with a kill and a failing model


def write_faulty_config(workdir):
    """Model ``tiny`` trains on sst2 long enough (300 steps) to be killed midway, and briefly on stsb;
    model ``broken`` cannot be fine-tuned at all (its config asks for dropout 1.5)."""
    config = tiny_config(workdir)
    broken_dir = build_tiny_bert(workdir / "broken_model")
    model_config = json.loads((broken_dir / "config.json").read_text())
    (broken_dir / "config.json").write_text(json.dumps({**model_config, "hidden_dropout_prob": 1.5}))
    config["models"] = {
        "tiny": {**config["models"]["tiny"], "prune": False},
        "broken": {"source": {"kind": "local", "path": str(broken_dir)}, "prune": False},
    }
    config["tasks"] = {
        "sst2": write_tiny_tasks(workdir / "long", rows=400)["sst2"],
        "stsb": write_tiny_tasks(workdir / "short", rows=32)["stsb"],
    }
    config["training"].update(epochs=6, checkpoint_minutes=0.001)
    write_config(workdir, config)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """Kill the whole snakemake process group once tiny/sst2 has saved training state, then run again."""
    workdir = tmp_path_factory.mktemp("faulty")
    write_faulty_config(workdir)
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "--cores", "2", "--keep-going"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(workdir / "first_run.log", "w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    state = workdir / "results/train_state/tiny/none-k0/sst2/seed1/state.json"
    deadline = time.monotonic() + 500
    while not state.exists():
        assert first.poll() is None, f"snakemake ended before training saved state:\n{(workdir / 'first_run.log').read_text()}"
        assert time.monotonic() < deadline, "no training state after 500 s"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    after_kill = {
        "saved_step": json.loads(state.read_text())["progress"]["step"],
        "outputs": sorted(p.name for p in (workdir / SST2).glob("*")) if (workdir / SST2).exists() else [],
    }
    # A killed snakemake leaves its lock behind and says to run --unlock, as a user then does.
    snakemake(workdir, "--unlock")
    second = snakemake(workdir, "--cores", "2", "--keep-going", check=False)
    return workdir, after_kill, second


@pytest.mark.slow
def test_kill_leaves_no_output_marked_complete(faulty_run):
    _, after_kill, _ = faulty_run
    assert after_kill["saved_step"] > 0
    assert after_kill["outputs"] == []  # no metrics.json, finetuned/ or train_log.json for the killed cell


@pytest.mark.slow
def test_rerun_resumes_from_the_saved_step_and_completes(faulty_run):
    workdir, after_kill, _ = faulty_run
    step = after_kill["saved_step"]
    log = (workdir / "logs/finetune/tiny/none-k0/sst2/seed1.log").read_text()
    assert f"resuming from step {step} of 300" in log
    train_log = json.loads((workdir / SST2 / "train_log.json").read_text())
    assert train_log["resumed_from_step"] == step and len(train_log["losses"]) == 300
    assert read_cell_metrics(workdir / SST2 / "metrics.json")["task"] == "sst2"
    assert not (workdir / "results/train_state/tiny/none-k0/sst2/seed1").exists()


@pytest.mark.slow
def test_keep_going_finishes_the_other_cells_and_records_the_failed_ones(faulty_run):
    workdir, _, second = faulty_run
    assert second.returncode != 0
    assert "Error in rule finetune" in second.stdout + second.stderr
    for target in TARGETS:
        assert read_cell_metrics(workdir / target)["model"] == "tiny"
    failed = sorted(workdir.glob("results/failed/**/*.json"))
    assert [str(p.relative_to(workdir)) for p in failed] == [
        "results/failed/broken/none-k0/sst2/seed1.json", "results/failed/broken/none-k0/stsb/seed1.json"]
    record = json.loads(failed[0].read_text())
    assert record == {"model": "broken", "strategy": "none", "k": 0, "task": "sst2", "seed": 1, "rule": "finetune",
                      "error": record["error"]}
    assert "dropout probability has to be between 0 and 1, but got 1.5" in record["error"]


@pytest.mark.slow
def test_a_corrupt_result_is_recomputed_and_a_damaged_intermediate_under_a_valid_one_is_left(faulty_run):
    workdir, _, _ = faulty_run
    assert planned_jobs(workdir, *TARGETS) == {}
    metrics = workdir / SST2 / "metrics.json"
    metrics.write_text(metrics.read_text()[:-30])
    weights = workdir / STSB / "finetuned" / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    damaged = {path: path.read_bytes() for path in (metrics, weights)}

    result = snakemake(workdir, "-n", *TARGETS)
    output = result.stdout + result.stderr
    assert f"WARNING: damaged result {SST2}/metrics.json: truncated or corrupt JSON" in output
    assert f"{STSB}/finetuned" not in output  # its metrics.json is valid: nothing to redo
    assert {path: path.read_bytes() for path in damaged} == damaged  # a dry run changes no file
    # sst2 only re-evaluates (its fine-tuned model is whole); nothing else runs
    assert planned_jobs(workdir, *TARGETS) == {"evaluate": 1}


# ------------------------------------------------------------------ data errors inside a job


def test_a_malformed_row_fails_prepare_naming_file_and_line_and_leaves_nothing(tmp_path):
    model_dir = build_tiny_bert(tmp_path / "model")
    source = write_tiny_tasks(tmp_path / "glue", rows=16)["stsb"]["source"]
    train_tsv = tmp_path / "glue" / "STS-B" / "train.tsv"
    lines = train_tsv.read_text().splitlines(keepends=True)
    lines[5] = "\t".join(lines[5].split("\t")[:4]) + "\n"  # line 6 loses its sentences and score
    train_tsv.write_text("".join(lines))
    with pytest.raises(GlueDataError, match=rf"{train_tsv}:6: expected 10 tab-separated fields, found 4"):
        prepare_task(model_dir, "stsb", source, tmp_path / "features", max_length=32)
    assert not (tmp_path / "features").exists() and not list(tmp_path.glob(".features*"))


def test_subsampled_rows_are_counted_in_the_log_and_info(tmp_path, caplog):
    model_dir = build_tiny_bert(tmp_path / "model")
    source = write_tiny_tasks(tmp_path / "glue", rows=16)["sst2"]["source"]
    with caplog.at_level(logging.INFO):
        info = prepare_task(model_dir, "sst2", source, tmp_path / "features", max_length=32, max_train_examples=10)
    assert info["splits"]["train"] | {"rows": 10, "rows_available": 16, "subsampled": True} == info["splits"]["train"]
    assert "sst2/train: 10 of 16 rows" in caplog.text


def test_result_folders_get_the_usual_permissions_not_owner_only(tmp_path):
    from dropbench.runtime.atomic import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "features") as tmp:
            (tmp / "info.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "features").stat().st_mode & 0o777 == 0o755
