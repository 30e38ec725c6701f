"""Inference speed, measured with one fixed protocol so that cells compare.

Protocol: a synthetic batch of ``batch_size`` rows of exactly ``seq_len`` tokens (no padding),
``warmup`` untimed forward passes, then ``repeats`` timed passes; report the median.
"""

from __future__ import annotations

import statistics
import time

import torch

from dropbench.device import autocast


@torch.inference_mode()
def measure(model, device: torch.device, batch_size: int = 32, seq_len: int = 128, warmup: int = 3, repeats: int = 10) -> dict:
    model.eval()
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    inputs = {
        "input_ids": torch.randint(5, vocab, (batch_size, seq_len), generator=generator).to(device),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
    }
    timings = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device):
            model(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    return {
        "protocol": {"batch_size": batch_size, "seq_len": seq_len, "warmup": warmup, "repeats": repeats, "device": str(device), "threads": torch.get_num_threads()},
        "latency_ms_median": median * 1000,
        "throughput_examples_per_s": batch_size / median,
    }
