"""Inference latency of one (pruned) encoder architecture, measured once by its own job.

Latency is a property of the architecture (model, strategy, k), not of a fine-tuned cell, so the
``measure_latency`` rule times each architecture once, while it holds the whole machine (see
workflow/rules/latency.smk), and every cell's record copies the figure.

Protocol: a synthetic batch of ``batch_size`` rows of exactly ``seq_len`` tokens (no padding),
``warmup`` untimed forward passes, then at least ``repeats`` timed passes, and more until the
``agree`` fastest passes lie within ``tolerance`` of the fastest (or ``max_seconds`` of timed passes
are spent: ``converged`` is then false). Anything else running on the machine only ever adds time, so
the architecture's own cost is the floor of its passes. Each pass is timed in pieces (each encoder
layer's call, then the rest: embeddings, pooler), and the figure is the sum of each piece's floor, the
mean of its ``agree`` fastest timings (``piecewise_floor``): averaging several keeps one lucky timing
from deciding it, and a quiet moment as long as one layer comes more often than one as long as a pass.

A machine's own speed drifts (on the development VM the matrix-product peak moved 16% within
minutes), so two jobs timed minutes apart can disagree although each is at its floor. A pruned
architecture is therefore timed against a yardstick, the full model it was cut from, in the same
process, one pass of each in turn (the order alternating): both see the same machine, and the ratio
of their figures, ``relative_to_full``, is what its depth and shape cost. The record keeps the ratio,
this job's own figure (``latency_ms``) and the full model's beside it (``full_latency_ms_beside``); the
aggregate (``aggregate.in_full_models_figure``) expresses every architecture of a model as its ratio
times one figure of the full model, the lowest of all its timings in the run, so architectures of
equal depth differ only by how well each ratio was measured. benchmarks/latency_repeatability.py
measures how well it all agrees. On a GPU each pass is timed whole with CUDA events; on a CPU with one
thread (what the ``measure_latency`` job uses) by the thread's CPU time, with several threads by wall
time. The process keeps the memory it frees (``reuse_freed_memory``), so no pass pays for page faults.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from transformers import AutoModel

from dropbench.prune import layer_drop
from dropbench.runtime.atomic import write_json
from dropbench.runtime.device import autocast, pick_device, reuse_freed_memory


def _clock(device: torch.device):
    """The CPU time of this thread when torch computes in it alone (one thread): time other
    processes take from the core is not counted, so a busy machine does not inflate the figure.
    With several threads, wall time."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


@contextmanager
def layer_marks(model, clock):
    """While open, ``model`` notes ``clock()`` before and after each call of an encoder layer (module
    hooks, removed on exit) in the list it yields, so that a pass can be split into its layer calls."""
    marks: list[float] = []
    layers = model.base_model.get_submodule(layer_drop.adapter_for(model).layers)
    hooks = []
    for layer in layers:
        hooks.append(layer.register_forward_pre_hook(lambda *args: marks.append(clock())))
        hooks.append(layer.register_forward_hook(lambda *args: marks.append(clock())))
    try:
        yield marks
    finally:
        for hook in hooks:
            hook.remove()


def _timed_pass(model, inputs: dict, device: torch.device, marks: list[float] | None = None) -> list[float]:
    """Seconds of one forward pass in pieces: each layer call, then the rest of the pass (embeddings,
    pooler) when ``marks`` come from ``layer_marks``; else (and on a GPU) the whole pass as one piece."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with autocast(device):
            model(**inputs)
        end.record()
        end.synchronize()
        return [start.elapsed_time(end) / 1000]
    clock = _clock(device)
    if marks is not None:
        marks.clear()
    start = clock()
    with autocast(device):
        model(**inputs)
    total = clock() - start
    if not marks:
        return [total]
    layers = [end - begin for begin, end in zip(marks[::2], marks[1::2])]
    return layers + [total - sum(layers)]


def at_floor(timings: list[float], agree: int, tolerance: float) -> bool:
    """Whether the ``agree`` fastest passes are within ``tolerance`` (a fraction) of the fastest."""
    if len(timings) < agree:
        return False
    fastest = sorted(timings)[:agree]
    return fastest[-1] <= fastest[0] * (1 + tolerance)


def floor(timings: list[float], agree: int) -> float:
    """The mean of the ``agree`` fastest passes (of all of them when there are fewer)."""
    fastest = sorted(timings)[:agree]
    return sum(fastest) / len(fastest)


def whole_passes(passes: list[list[float]]) -> list[float]:
    """The seconds of each pass, its pieces added up."""
    return [sum(pieces) for pieces in passes]


def piecewise_floor(passes: list[list[float]], agree: int) -> float:
    """The sum over pieces (layer calls, the rest) of each piece's floor across passes: a pass is slowed
    by moments of the machine's own (the development VM: ~25% for a fraction of a second, other tenants),
    and a quiet moment as long as one layer comes more often than one as long as a whole pass."""
    return sum(floor([pieces[i] for pieces in passes], agree) for i in range(len(passes[0])))


def synthetic_inputs(vocab_size: int, batch_size: int, seq_len: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(5, vocab_size, (batch_size, seq_len), generator=generator).to(device),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
    }


@torch.inference_mode()
def timed_series(models: list, inputs: dict, device: torch.device, warmup: int, repeats: int, agree: int,
                 tolerance: float, max_seconds: float) -> list[list[list[float]]]:
    """The pieces of each timed pass of each model (``_timed_pass``), one pass of each model in turn (the
    order reversed every other round, so neither always runs right after the other), until the whole
    passes of every model are at their floor."""
    series: list[list[list[float]]] = [[] for _ in models]

    def done() -> bool:
        if len(series[0]) < repeats:
            return False
        spent = sum(sum(whole_passes(passes)) for passes in series)
        return all(at_floor(whole_passes(passes), agree, tolerance) for passes in series) or spent >= max_seconds

    with ExitStack() as hooks:
        marks = [None if device.type == "cuda" else hooks.enter_context(layer_marks(model, _clock(device))) for model in models]
        for model, model_marks in zip(models, marks):
            model.eval()
            for _ in range(warmup):
                _timed_pass(model, inputs, device, model_marks)
        while not done():
            order = range(len(models)) if len(series[0]) % 2 == 0 else reversed(range(len(models)))
            for i in order:
                series[i].append(_timed_pass(models[i], inputs, device, marks[i]))
    return series


def measure(model, device: torch.device, batch_size: int = 32, seq_len: int = 128, warmup: int = 3, repeats: int = 10,
            agree: int = 3, tolerance: float = 0.02, max_seconds: float = 60.0, full_model=None) -> dict:
    """Time ``model``; with ``full_model`` (the yardstick), both in turn, and report their ratio too."""
    inputs = synthetic_inputs(model.config.vocab_size, batch_size, seq_len, device)
    models = [model] if full_model is None else [model, full_model]
    series = timed_series(models, inputs, device, warmup, repeats, agree, tolerance, max_seconds)
    timings = whole_passes(series[0])
    median = statistics.median(timings)
    quartiles = statistics.quantiles(timings, n=4) if len(timings) > 1 else [median, median, median]
    result = {
        "protocol": {"batch_size": batch_size, "seq_len": seq_len, "warmup": warmup, "repeats": repeats, "agree": agree,
                     "tolerance": tolerance, "max_seconds": max_seconds, "device": str(device),
                     "threads": torch.get_num_threads(), "clock": "cuda_events" if device.type == "cuda" else _clock(device).__name__},
        "latency_ms": piecewise_floor(series[0], agree) * 1000,
        "latency_ms_whole_passes": floor(timings, agree) * 1000,
        "latency_ms_median": median * 1000,
        "latency_spread": (quartiles[2] - quartiles[0]) / median,
        "passes": len(timings),
        "pieces": len(series[0][0]),
        "converged": all(at_floor(whole_passes(passes), agree, tolerance) for passes in series),
    }
    if full_model is not None:
        result["full_latency_ms_beside"] = piecewise_floor(series[1], agree) * 1000
        result["relative_to_full"] = result["latency_ms"] / result["full_latency_ms_beside"]
    return result


def _load(model_dir: str | Path, device: torch.device):
    return AutoModel.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False).to(device)


def measure_architecture(model_dir: str | Path, protocol: dict, out_path: str | Path, architecture: dict,
                         full_model_dir: str | Path | None = None) -> dict:
    """Time the encoder in ``model_dir`` (no task head: its cost is negligible) and write the JSON.
    ``architecture`` (model, strategy, k, scope) names what was timed: the aggregate joins it to cells.
    A pruned encoder is timed beside its full model (``full_model_dir``), the full model alone."""
    device = pick_device()
    reuse_freed_memory()  # no page faults inside the timed passes
    model = _load(model_dir, device)
    full_model = _load(full_model_dir, device) if full_model_dir is not None else None
    timed = measure(model, device, **protocol, full_model=full_model)
    result = {
        "architecture": architecture,
        "num_layers": layer_drop.num_layers(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        **timed,
        "throughput_examples_per_s": timed["protocol"]["batch_size"] / (timed["latency_ms"] / 1000),
    }
    write_json(out_path, result)
    return result
