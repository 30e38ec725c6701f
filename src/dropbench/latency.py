"""Inference latency of one (pruned) encoder architecture, measured once by its own job.

Latency is a property of the architecture (model, strategy, k), not of a fine-tuned cell, so the
``measure_latency`` rule times each architecture once, while it holds the whole machine (see
workflow/rules/latency.smk), and every cell's record copies the figure.

Protocol: a synthetic batch of ``batch_size`` rows of exactly ``seq_len`` tokens (no padding),
``warmup`` untimed forward passes, then at least ``repeats`` timed passes, and more until the
``agree`` fastest passes lie within ``tolerance`` of the fastest (or ``max_seconds`` of timed passes
are spent: ``converged`` is then false). The figure, ``latency_ms``, is the fastest pass: anything
else running on the machine (other users, the OS) only ever adds time, so the fastest pass is the
architecture's own cost, and requiring several passes at that floor keeps one lucky or unlucky pass
from deciding it. How well two runs of one architecture agree is measured by
benchmarks/latency_repeatability.py (target 5%; not met on a VM whose own speed drifts, README).
The median and the spread (interquartile range over median) are reported beside it. On a GPU each
pass is timed with CUDA events; on a CPU with one thread (what the ``measure_latency`` job uses) by
the thread's CPU time, with several threads by wall time. The process keeps the memory it frees
(``reuse_freed_memory``), so no pass pays for page faults.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModel

from dropbench import layer_drop
from dropbench.atomic import write_json
from dropbench.device import autocast, pick_device, reuse_freed_memory


def _clock(device: torch.device):
    """The CPU time of this thread when torch computes in it alone (one thread): time other
    processes take from the core is not counted, so a busy machine does not inflate the figure.
    With several threads, wall time."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def _timed_pass(model, inputs: dict, device: torch.device) -> float:
    """Seconds of one forward pass."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with autocast(device):
            model(**inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    clock = _clock(device)
    start = clock()
    with autocast(device):
        model(**inputs)
    return clock() - start


def at_floor(timings: list[float], agree: int, tolerance: float) -> bool:
    """Whether the ``agree`` fastest passes are within ``tolerance`` (a fraction) of the fastest."""
    if len(timings) < agree:
        return False
    fastest = sorted(timings)[:agree]
    return fastest[-1] <= fastest[0] * (1 + tolerance)


@torch.inference_mode()
def measure(model, device: torch.device, batch_size: int = 32, seq_len: int = 128, warmup: int = 3, repeats: int = 10,
            agree: int = 3, tolerance: float = 0.02, max_seconds: float = 60.0) -> dict:
    model.eval()
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    inputs = {
        "input_ids": torch.randint(5, vocab, (batch_size, seq_len), generator=generator).to(device),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
    }
    for _ in range(warmup):
        _timed_pass(model, inputs, device)
    timings: list[float] = []
    while len(timings) < repeats or (not at_floor(timings, agree, tolerance) and sum(timings) < max_seconds):
        timings.append(_timed_pass(model, inputs, device))
    median = statistics.median(timings)
    quartiles = statistics.quantiles(timings, n=4) if len(timings) > 1 else [median, median, median]
    return {
        "protocol": {"batch_size": batch_size, "seq_len": seq_len, "warmup": warmup, "repeats": repeats, "agree": agree,
                     "tolerance": tolerance, "max_seconds": max_seconds, "device": str(device),
                     "threads": torch.get_num_threads(), "clock": "cuda_events" if device.type == "cuda" else _clock(device).__name__},
        "latency_ms": min(timings) * 1000,
        "latency_ms_median": median * 1000,
        "latency_spread": (quartiles[2] - quartiles[0]) / median,
        "passes": len(timings),
        "converged": at_floor(timings, agree, tolerance),
        "throughput_examples_per_s": batch_size / min(timings),
    }


def measure_architecture(model_dir: str | Path, protocol: dict, out_path: str | Path, architecture: dict) -> dict:
    """Time the encoder in ``model_dir`` (no task head: its cost is negligible) and write the JSON.
    ``architecture`` (model, strategy, k, scope) names what was timed: the aggregate joins it to cells."""
    device = pick_device()
    reuse_freed_memory()  # no page faults inside the timed passes
    model = AutoModel.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False).to(device)
    result = {
        "architecture": architecture,
        "num_layers": layer_drop.num_layers(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        **measure(model, device, **protocol),
    }
    write_json(out_path, result)
    return result
