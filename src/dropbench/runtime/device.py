"""Which device a job runs on, and mixed precision where the hardware has it."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os

import torch

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs with native bf16 (Ampere and newer), fp16 on older GPUs, None (fp32) on CPU.

    ``including_emulation=False``: on e.g. a V100 torch can emulate bf16 matmuls, far slower than fp16.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def autocast(device: torch.device):
    """Autocast to ``autocast_dtype(device)``; a no-op in full precision."""
    dtype = autocast_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


class Precision:
    """Mixed precision for training: autocast, plus a gradient scaler when it is fp16 (whose narrow
    exponent range makes small gradients underflow without one). bf16 and fp32 need no scaler."""

    def __init__(self, device: torch.device):
        self.device = device
        self.dtype = autocast_dtype(device)
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self.name = {None: "fp32", torch.bfloat16: "bf16-autocast", torch.float16: "fp16-autocast+grad-scaler"}[self.dtype]

    def autocast(self):
        return contextlib.nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, optimizer) -> None:
        """Bring the gradients back to their true scale before clipping them."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()

    def scaler_state(self) -> dict | None:
        """The scaler's state as plain numbers (it goes into the JSON of the saved training state)."""
        if not self.scaler:
            return None
        return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in self.scaler.state_dict().items()}

    def load_scaler_state(self, state: dict | None) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)


def set_threads(threads: int) -> None:
    """Use the threads Snakemake gave this job, no more (jobs share the machine)."""
    torch.set_num_threads(max(1, int(threads)))
    os.environ["OMP_NUM_THREADS"] = str(threads)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 2**30


def reuse_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the OS (glibc only).

    glibc serves every block above 32 MiB with a fresh mmap and unmaps it on free. A training step
    allocates such blocks anew each time (the word-embedding gradient alone: 47 MB for
    all-MiniLM-L6-v2, 94 MB for bert-base), so the kernel page-faults and zero-fills them at every
    step: ~11% of a full-depth MiniLM step on one CPU thread and ~25% of a 2-layer one (one process
    alternating the two settings; README "Benchmarks"). Raising the mmap and trim thresholds to 1 GiB keeps those blocks in
    the heap. Results are unchanged; the process keeps its peak memory instead of returning it.
    Returns whether the setting took (False where the C library has no mallopt, e.g. macOS, musl).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        log.info("no mallopt in the C library (%s): freed memory goes back to the OS", name)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
