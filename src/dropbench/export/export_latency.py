"""The ``measure_export_latency`` step: the speed of an exported cell in each runtime it ships in.

The protocol of ``measure_latency`` (dropbench.evaluate.latency): the same synthetic batch (``batch_size`` rows of
``seq_len`` tokens, no padding), ``warmup`` untimed passes, then timed passes until the ``agree`` fastest
of every runtime lie within ``tolerance`` of its fastest or ``max_seconds`` are spent; one thread, timed by
the thread's CPU time (ONNX Runtime with one intra-op thread computes in the calling thread), and the
unpruned torch encoder as the yardstick timed beside them, one pass of each in turn (the order reversed
every other round). Each runtime's figure is the floor of its whole passes (the ONNX graphs have no layer
calls to time apart); ``speedup_vs_full_torch`` is the yardstick's floor over the runtime's: the same
machine, the same minutes. The exported models include their task head, the yardstick does not (one
linear layer: negligible beside the encoder).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from dropbench.train import heads
from dropbench.runtime.atomic import write_json
from dropbench.runtime.device import reuse_freed_memory
from dropbench.export.exports import input_names_of, session
from dropbench.evaluate.latency import at_floor, floor, synthetic_inputs

YARDSTICK = "full_torch"


def torch_pass(model, inputs: dict):
    @torch.inference_mode()
    def run():
        model(**inputs)

    return run


def onnx_pass(run_session, inputs: dict):
    feeds = {name: inputs[name].numpy() for name in input_names_of(run_session)}
    return lambda: run_session.run(["logits"], feeds)


def timed_runs(passes: dict, warmup: int, repeats: int, agree: int, tolerance: float, max_seconds: float) -> dict:
    """The seconds of each timed pass of each named callable, one pass of each in turn."""
    timings = {name: [] for name in passes}
    for run in passes.values():
        for _ in range(warmup):
            run()

    def done() -> bool:
        if len(next(iter(timings.values()))) < repeats:
            return False
        spent = sum(sum(series) for series in timings.values())
        return all(at_floor(series, agree, tolerance) for series in timings.values()) or spent >= max_seconds

    names = list(passes)
    rounds = 0
    while not done():
        for name in names if rounds % 2 == 0 else reversed(names):
            start = time.thread_time()
            passes[name]()
            timings[name].append(time.thread_time() - start)
        rounds += 1
    return timings


def measure_export(export_dir: str | Path, full_model_dir: str | Path, protocol: dict, out_path: str | Path,
                   export: dict) -> dict:
    """Time the cell in ``export_dir`` in torch (its ``hf/`` folder), ONNX Runtime fp32 and int8, beside the
    full torch encoder in ``full_model_dir``; write the JSON. ``export`` names the cell (model, variant, task)."""
    torch.set_num_threads(1)
    reuse_freed_memory()
    export_dir = Path(export_dir)
    model = heads.load_classifier(export_dir / "hf").eval()
    full = AutoModel.from_pretrained(full_model_dir, use_safetensors=True, trust_remote_code=False).eval()
    inputs = synthetic_inputs(model.config.vocab_size, protocol["batch_size"], protocol["seq_len"], torch.device("cpu"))
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    fp32, int8 = session(export_dir / "model.onnx"), session(export_dir / "model.int8.onnx")
    torch_inputs = {name: inputs[name] for name in input_names_of(fp32)}  # token types only where the model takes them
    passes = {
        "torch": torch_pass(model, torch_inputs),
        "onnx_fp32": onnx_pass(fp32, inputs),
        "onnx_int8": onnx_pass(int8, inputs),
        YARDSTICK: torch_pass(full, torch_inputs),
    }
    agree = protocol.get("agree", 3)
    tolerance = protocol.get("tolerance", 0.02)
    timings = timed_runs(passes, protocol["warmup"], protocol["repeats"], agree, tolerance, protocol.get("max_seconds", 60.0))
    floors = {name: floor(series, agree) * 1000 for name, series in timings.items()}
    result = {
        "export": export,
        "protocol": {"batch_size": protocol["batch_size"], "seq_len": protocol["seq_len"], "warmup": protocol["warmup"],
                     "repeats": protocol["repeats"], "agree": agree, "tolerance": tolerance,
                     "max_seconds": protocol.get("max_seconds", 60.0), "threads": 1, "clock": "thread_time"},
        "full_latency_ms_beside": floors[YARDSTICK],
        "runtimes": {
            name: {"latency_ms": floors[name], "latency_ms_median": float(np.median(timings[name])) * 1000,
                   "speedup_vs_full_torch": floors[YARDSTICK] / floors[name], "passes": len(timings[name])}
            for name in passes if name != YARDSTICK
        },
        "converged": all(at_floor(series, agree, tolerance) for series in timings.values()),
    }
    write_json(out_path, result)
    return result
