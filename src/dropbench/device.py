"""Which device a job runs on, and mixed precision where the hardware has it."""

from __future__ import annotations

import contextlib
import os

import torch


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast(device: torch.device):
    """bf16 autocast on GPUs that support it, fp16 on older ones, full precision on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def set_threads(threads: int) -> None:
    """Use the threads Snakemake gave this job, no more (jobs share the machine)."""
    torch.set_num_threads(max(1, int(threads)))
    os.environ["OMP_NUM_THREADS"] = str(threads)
