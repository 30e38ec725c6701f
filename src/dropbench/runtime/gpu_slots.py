"""Give each concurrent GPU job on one workstation its own device, or its own share of one.

``snakemake --resources gpu=N`` caps how many GPU jobs run at once, but not which device each gets:
without help every job opens cuda:0. Each device has ``jobs_per_gpu`` slots (small fine-tunes leave
most of a GPU idle, so several share one). A job claims the first free slot by holding an exclusive
lock on ``<lock dir>/gpu<id>.lock`` (slot 0) or ``gpu<id>-<slot>.lock``, filling slot 0 of every
device before slot 1 of any, and exports ``CUDA_VISIBLE_DEVICES=<id>`` before torch first touches
CUDA (importing torch does not): each job still sees exactly one device. The kernel drops the lock when the process ends, even on
kill -9, so a crashed job never keeps its GPU. Under SLURM the scheduler has already set
``CUDA_VISIBLE_DEVICES`` for the allocation (one GPU, or the GPU its shards are on), so it is
only logged there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path

COUNT_ENV = "DROPBENCH_GPU_COUNT"
LOCK_DIR_ENV = "DROPBENCH_GPU_LOCK_DIR"
JOBS_PER_GPU_ENV = "DROPBENCH_JOBS_PER_GPU"
BASE_MODEL_PARAMETERS = 110e6  # bert-base-uncased, the paper's largest model

log = logging.getLogger(__name__)


def visible_devices(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Device ids that GPU jobs may use: a fake count, else ``CUDA_VISIBLE_DEVICES``, else nvidia-smi."""
    env = os.environ if env is None else env
    if COUNT_ENV in env:
        return [str(i) for i in range(_parse_count(env[COUNT_ENV]))]
    if "CUDA_VISIBLE_DEVICES" in env:
        return [device.strip() for device in env["CUDA_VISIBLE_DEVICES"].split(",") if device.strip() not in ("", "-1")]
    return [str(i) for i in range(_nvidia_smi_count())]


def _parse_count(raw: str) -> int:
    if not raw.strip().isdigit():
        raise ValueError(f"{COUNT_ENV}={raw!r} is not a GPU count: use a whole number >= 0")
    return int(raw)


def _nvidia_smi_count() -> int:
    # Counting through torch would initialise CUDA, after which CUDA_VISIBLE_DEVICES is ignored.
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def default_jobs_per_gpu(memory_mib: float, parameters: float = BASE_MODEL_PARAMETERS) -> int:
    """Fine-tunes that fit on a GPU of ``memory_mib`` at once, 1 to 8.

    One job needs 16 bytes per parameter (fp32 weights and gradients, AdamW's two moments) plus
    2 GiB for activations at batch 32 x 128 tokens and the CUDA context; 10% of memory is left
    free. A 40 GB A100 fits 8 bert-base fine-tunes, a 16 GB V100 3, a 24 GB card 5.
    """
    per_job_mib = 16 * parameters / 2**20 + 2048
    return max(1, min(8, int(0.9 * memory_mib // per_job_mib)))


def jobs_per_gpu(env: MutableMapping[str, str] | None = None) -> int:
    """``DROPBENCH_JOBS_PER_GPU``, else ``default_jobs_per_gpu`` of the smallest GPU present, else 1."""
    env = os.environ if env is None else env
    if JOBS_PER_GPU_ENV in env:
        raw = env[JOBS_PER_GPU_ENV]
        if not raw.strip().isdigit() or int(raw) < 1:
            raise ValueError(f"{JOBS_PER_GPU_ENV}={raw!r} is not a number of jobs per GPU: use a whole number >= 1")
        return int(raw)
    memory = _nvidia_smi_memory_mib()
    return default_jobs_per_gpu(memory) if memory else 1


def _nvidia_smi_memory_mib() -> int | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        listing = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        return min(int(line) for line in listing.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def lock_dir(env: MutableMapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "dropbench-gpu-slots")


def try_claim(devices: Sequence[str], directory: Path, slots_per_device: int = 1) -> tuple[str, int] | None:
    """The device of the first free slot and the open lock descriptor, or None when all are taken."""
    directory.mkdir(parents=True, exist_ok=True)
    for slot in range(slots_per_device):
        for device in devices:
            descriptor = _try_lock(directory, device, slot)
            if descriptor is not None:
                return device, descriptor
    return None


def _try_lock(directory: Path, device: str, slot: int) -> int | None:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", device) + (f"-{slot}" if slot else "")
    path = directory / f"gpu{name}.lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


@contextlib.contextmanager
def gpu_slot(env: MutableMapping[str, str] | None = None, poll_seconds: float = 5.0) -> Iterator[str | None]:
    """Hold one free device for the body and point ``CUDA_VISIBLE_DEVICES`` at it; wait while all are busy.

    Yields the device id, or what SLURM set (or None) where nothing is to be done: inside a SLURM job,
    and on machines without GPUs.
    """
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env:
        device = env.get("CUDA_VISIBLE_DEVICES")
        log.info("inside SLURM job %s, which chose the GPU: CUDA_VISIBLE_DEVICES=%s", env["SLURM_JOB_ID"], device)
        yield device
        return
    devices = visible_devices(env)
    if not devices:
        yield None
        return
    directory = lock_dir(env)
    slots = jobs_per_gpu(env)
    claim = try_claim(devices, directory, slots)
    if claim is None:
        log.info("all GPUs %s are busy (locks in %s); waiting for one to free up", devices, directory)
    while claim is None:
        time.sleep(poll_seconds)
        claim = try_claim(devices, directory, slots)
    device, descriptor = claim
    previous = env.get("CUDA_VISIBLE_DEVICES")
    env["CUDA_VISIBLE_DEVICES"] = device
    log.info("running on GPU %s (CUDA_VISIBLE_DEVICES=%s)", device, device)
    try:
        yield device
    finally:
        if previous is None:
            env.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            env["CUDA_VISIBLE_DEVICES"] = previous
        os.close(descriptor)
