"""Exports (config ``export``; dropbench.export.exports, export_latency, exports_report): ONNX fp32 and int8 models of
chosen cells, checked against torch on the dev rows, timed beside the full torch model, tabulated."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import build_tiny_bert, tiny_config
from workflow_runner import REPO

from dropbench.export import export_latency, exports, exports_report
from dropbench.train import heads
from dropbench.plan.config_check import ConfigError, load_and_check


def tiny_classifier(root, head: str, num_labels: int = 2):
    model_dir = build_tiny_bert(root / "model")
    problem = "regression" if num_labels == 1 else "single_label_classification"
    torch.manual_seed(1)
    return heads.build(model_dir, head, num_labels, problem).eval()


def padded_batch(vocab_size: int) -> dict:
    """Two rows of different lengths (padding on the right), with token types."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (2, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    ids[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.parametrize("head,num_labels", [(heads.NATIVE, 2), (heads.MEAN_POOLING, 2), (heads.MEAN_POOLING, 1)])
def test_the_onnx_model_gives_torchs_logits_at_other_batch_and_sequence_sizes(tmp_path, one_thread, head, num_labels):
    model = tiny_classifier(tmp_path, head, num_labels)
    example = exports.padded_example({name: t[:, :5] for name, t in padded_batch(model.config.vocab_size).items()})
    exports.export_onnx(model, example, tmp_path / "model.onnx")
    run = exports.session(tmp_path / "model.onnx")
    assert exports.input_names_of(run) == ["input_ids", "attention_mask", "token_type_ids"]
    for rows, length in ((2, 12), (1, 3)):
        batch = {name: t[:rows, :length] for name, t in padded_batch(model.config.vocab_size).items()}
        with torch.no_grad():
            expected = model(**batch).logits.numpy()
        got = run.run(["logits"], {name: t.numpy() for name, t in batch.items()})[0]
        assert got.shape == expected.shape == (rows, num_labels)
        assert np.abs(got - expected).max() <= 1e-4


def test_int8_quantization_shrinks_the_model_and_stays_close(tmp_path, one_thread):
    model = tiny_classifier(tmp_path, heads.MEAN_POOLING)
    batch = padded_batch(model.config.vocab_size)
    exports.export_onnx(model, batch, tmp_path / "model.onnx")
    exports.quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    assert (tmp_path / "model.int8.onnx").stat().st_size < (tmp_path / "model.onnx").stat().st_size
    feeds = {name: t.numpy() for name, t in batch.items()}
    fp32 = exports.session(tmp_path / "model.onnx").run(["logits"], feeds)[0]
    int8 = exports.session(tmp_path / "model.int8.onnx").run(["logits"], feeds)[0]
    assert 0 < np.abs(int8 - fp32).max() < 0.5  # quantized (not identical), still the same model


def test_compare_reports_metrics_difference_and_agreement():
    reference = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1], [0.0, 3.0]], dtype=np.float32)
    logits = reference.copy()
    logits[2] = [0.1, 0.2]  # flips row 2
    labels = np.array([1, 0, 1, 1])
    compared = exports.compare("sst2", reference, logits, labels)
    assert compared["metrics"] == {"accuracy": 1.0}
    assert compared["prediction_agreement"] == 0.75
    assert compared["max_abs_logit_diff"] == pytest.approx(0.1)
    regression = exports.compare("stsb", np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.5], [3.0]]),
                                 np.array([1.0, 2.0, 3.0]))
    assert regression["prediction_agreement"] is None and regression["max_abs_logit_diff"] == 0.5
    assert set(regression["metrics"]) == {"pearson", "spearmanr"}


def test_timed_runs_alternate_and_stop_at_the_floor_or_the_time_limit():
    calls = []

    def busy(name, seconds):
        def run():
            calls.append(name)
            end = time.thread_time() + seconds
            while time.thread_time() < end:
                pass
        return run

    passes = {"a": busy("a", 0.002), "b": busy("b", 0.001)}
    timings = export_latency.timed_runs(passes, warmup=1, repeats=3, agree=2, tolerance=10.0, max_seconds=60)
    assert calls[:2] == ["a", "b"]  # warm-up, one each
    assert calls[2:6] == ["a", "b", "b", "a"]  # then in turn, the order reversed every other round
    assert len(timings["a"]) == len(timings["b"]) == 3  # at the floor (a wide tolerance) after the repeats
    assert min(timings["a"]) >= 0.002 and min(timings["b"]) >= 0.001
    calls.clear()
    timings = export_latency.timed_runs(passes, warmup=0, repeats=3, agree=2, tolerance=0.0, max_seconds=0.05)
    assert 3 <= len(timings["a"]) < 40  # never at a floor of zero tolerance: stops after max_seconds of passes


def write_pair(root, name, runtimes_scores, latencies, export_cell=None):
    cell = export_cell or {"model": "m", "strategy": "top", "k": 2, "task": "sst2", "seed": 1}
    record = {"cell": cell, "runtimes": {
        runtime: {"task_score": score, "bytes": 2_000_000, "max_abs_logit_diff": 0.01, "prediction_agreement": 0.99}
        for runtime, score in runtimes_scores.items()}}
    latency = {"export": {"model": cell["model"], "variant": f"{cell['strategy']}-k{cell['k']}", "task": cell["task"]},
               "protocol": {"batch_size": 4, "seq_len": 16, "threads": 1, "agree": 3}, "converged": True,
               "runtimes": {runtime: {"latency_ms": ms, "speedup_vs_full_torch": 100.0 / ms} for runtime, ms in latencies.items()}}
    (root / f"{name}.export.json").write_text(json.dumps(record))
    (root / f"{name}.latency.json").write_text(json.dumps(latency))
    return root / f"{name}.export.json", root / f"{name}.latency.json"


def test_the_exports_table_has_each_runtimes_score_change_size_and_speedup(tmp_path):
    export, latency = write_pair(tmp_path, "a", {"torch": 0.9, "onnx_fp32": 0.9, "onnx_int8": 0.88},
                                 {"torch": 50.0, "onnx_fp32": 40.0, "onnx_int8": 20.0})
    table = exports_report.write_report([export], [latency], tmp_path / "e.csv", tmp_path / "e.md")
    assert list(table["runtime"]) == ["torch", "onnx_fp32", "onnx_int8"]
    int8 = table.set_index("runtime").loc["onnx_int8"]
    assert int8["task_score"] == pytest.approx(88.0) and int8["score_change_vs_torch"] == pytest.approx(-2.0)
    assert int8["speedup_vs_full_torch"] == pytest.approx(5.0) and int8["megabytes"] == pytest.approx(2.0)
    assert "| onnx_int8 |" in (tmp_path / "e.md").read_text()
    assert len(pd.read_csv(tmp_path / "e.csv")) == 3
    other = {"model": "m", "strategy": "top", "k": 4, "task": "sst2", "seed": 1}
    _, wrong = write_pair(tmp_path, "b", {"torch": 0.9, "onnx_fp32": 0.9, "onnx_int8": 0.9},
                          {"torch": 1.0, "onnx_fp32": 1.0, "onnx_int8": 1.0}, other)
    with pytest.raises(ValueError, match="times"):
        exports_report.rows([export], [wrong])


def test_the_export_modules_do_not_import_onnx_until_used():
    code = ("import sys; import dropbench.export.exports, dropbench.export.export_latency, dropbench.export.exports_report, dropbench.plan.grid; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_bad_export_settings_are_refused_naming_the_value(tmp_path):
    config = tiny_config(tmp_path, strategies=("top",), k=(1,))
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    for export, message in (({"variants": ["top-k3"]}, "'export.variants': bad value 'top-k3'.*none-k0, top-k1"),
                            ({"variants": ["top-k1", "top-k1"]}, "export.variants"),
                            ({"variants": ["top-k1"], "seed": 7}, "'export.seed': bad value 7"),
                            ({"variants": []}, "export.variants"),
                            ({"variant": ["top-k1"]}, "variant")):
        with pytest.raises(ConfigError, match=message):
            load_and_check({**copy.deepcopy(config), "export": export}, schema)
    load_and_check({**config, "export": {"variants": ["none-k0", "top-k1"], "seed": 1}}, schema)
