"""Per-example dev predictions: saved with the cell, integrity-checked, and enough to recompute its metrics."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from tiny import build_tiny_bert, write_tiny_tasks

from dropbench.evaluate import metrics, predictions
from dropbench.data.prepare import prepare_task
from dropbench.plan.cells import Cell
from dropbench.plan.records import CorruptResultError



def test_round_trip_keeps_values_dtypes_and_row_index(tmp_path):
    path = tmp_path / "p.npz"
    splits = {
        "validation_matched": (np.array([0, 2, 1], dtype=np.int64), np.array([0, 1, 1], dtype=np.int64)),
        "validation_mismatched": (np.array([1, 1], dtype=np.int64), np.array([2, 1], dtype=np.int64)),
    }
    predictions.save(path, splits)
    loaded = predictions.load(path)
    assert set(loaded) == set(splits)
    for split, (pred, label) in splits.items():
        assert loaded[split]["prediction"].dtype == np.int64
        np.testing.assert_array_equal(loaded[split]["prediction"], pred)
        np.testing.assert_array_equal(loaded[split]["label"], label)
        np.testing.assert_array_equal(loaded[split]["index"], np.arange(len(pred)))
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_changed_or_truncated_file_is_corrupt(tmp_path):
    path = tmp_path / "p.npz"
    predictions.save(path, {"validation": (np.array([0.5, 1.5], dtype=np.float32), np.array([1.0, 2.0], dtype=np.float32))})
    # rewrite one array inside the archive, keeping the recorded digest: the digest check catches it
    with zipfile.ZipFile(path) as src:
        members = {name: src.read(name) for name in src.namelist()}
    buffer = io.BytesIO()
    np.save(buffer, np.array([0.5, 9.5], dtype=np.float32))
    members["validation/prediction.npy"] = buffer.getvalue()
    tampered = tmp_path / "tampered.npz"
    with zipfile.ZipFile(tampered, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    with pytest.raises(CorruptResultError, match="do not match their recorded sha256"):
        predictions.load(tampered)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptResultError, match="truncated.npz"):
        predictions.load(truncated)


def test_unequal_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split validation: predictions"):
        predictions.save(tmp_path / "p.npz", {"validation": (np.zeros(3), np.zeros(4))})
    assert not (tmp_path / "p.npz").exists()


def test_pairing_check_names_the_split():
    a = {"validation": {"index": np.arange(3), "prediction": np.zeros(3), "label": np.array([0, 1, 1])}}
    b = {"validation": {"index": np.arange(3), "prediction": np.ones(3), "label": np.array([0, 1, 0])}}
    predictions.check_paired(a, a, "same")
    with pytest.raises(ValueError, match="split validation has different dev rows or labels"):
        predictions.check_paired(a, b, "top-k2 vs none-k0")


def test_evaluate_step_saves_predictions_that_reproduce_its_metrics(tmp_path):
    from dropbench.evaluate.evaluation import write_cell_metrics

    torch.set_num_threads(1)
    model_dir = build_tiny_bert(tmp_path / "model")
    source = write_tiny_tasks(tmp_path / "glue", rows=32)["stsb"]["source"]
    prepare_task(model_dir, "stsb", source, tmp_path / "features", max_length=32)
    train_log = tmp_path / "train_log.json"
    train_log.write_text(json.dumps({"train_seconds": 1.0, "device": "cpu"}))
    cell = Cell("tiny", "none", 0, "stsb", 1)
    record = write_cell_metrics(
        cell, model_dir, model_dir, tmp_path / "features", train_log,
        8, tmp_path / "metrics.json", predictions_path=tmp_path / "predictions.npz",
    )
    saved = predictions.load(tmp_path / "predictions.npz")["validation"]
    assert len(saved["prediction"]) == record["dev_rows"]["validation"] == 32
    assert metrics.compute("stsb", saved["prediction"], saved["label"]) == pytest.approx(record["metrics"])


def test_evaluate_scores_the_held_out_train_rows_as_their_own_split(tmp_path):
    """Issue 25 item 1: with held-out train rows in the features (config tuning), evaluate scores them too,
    in metrics.json's held_out block and predictions.npz's held_out split, apart from the dev rows; a record
    without them over such features is a stale result (integrity)."""
    from dropbench.plan import integrity
    from dropbench.evaluate.evaluation import write_cell_metrics

    torch.set_num_threads(1)
    model_dir = build_tiny_bert(tmp_path / "model")
    source = write_tiny_tasks(tmp_path / "glue", rows=32)["stsb"]["source"]
    prepare_task(model_dir, "stsb", source, tmp_path / "features", max_length=32, held_out={"rows": 8, "seed": 0})
    train_log = tmp_path / "train_log.json"
    train_log.write_text(json.dumps({"train_seconds": 1.0, "device": "cpu"}))
    cell = Cell("tiny", "none", 0, "stsb", 1)
    record = write_cell_metrics(cell, model_dir, model_dir, tmp_path / "features", train_log, 8,
                                tmp_path / "metrics.json", predictions_path=tmp_path / "predictions.npz")
    saved = predictions.load(tmp_path / "predictions.npz")
    assert record["held_out"]["rows"] == len(saved["held_out"]["label"]) == 8
    assert record["dev_rows"] == {"validation": 32} and "held_out" not in record["metrics"]
    assert metrics.compute("stsb", saved["held_out"]["prediction"], saved["held_out"]["label"]) == pytest.approx(
        record["held_out"]["metrics"])
    assert record["held_out"]["task_score"] == pytest.approx(sum(record["held_out"]["metrics"].values()) / 2)
    assert integrity.predictions_problem(tmp_path / "predictions.npz", cell, record, tmp_path / "features") is None
    stale = {key: value for key, value in record.items() if key != "held_out"}
    assert "holds dev splits" in integrity.predictions_problem(tmp_path / "predictions.npz", cell, stale)
