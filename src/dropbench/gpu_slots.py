"""Give each concurrent GPU job on one workstation its own device.

``snakemake --resources gpu=N`` caps how many GPU jobs run at once, but not which device each gets:
without help every job opens cuda:0. A job claims the first free device by holding an exclusive
lock on ``<lock dir>/gpu<id>.lock`` and exports ``CUDA_VISIBLE_DEVICES=<id>`` before torch first
touches CUDA (importing torch does not). The kernel drops the lock when the process ends, even on
kill -9, so a crashed job never keeps its GPU. Under SLURM the scheduler has already set
``CUDA_VISIBLE_DEVICES`` for the allocation, so nothing is done there.
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


def lock_dir(env: MutableMapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "dropbench-gpu-slots")


def try_claim(devices: Sequence[str], directory: Path) -> tuple[str, int] | None:
    """The first device whose lock is free and the open lock descriptor, or None when all are taken."""
    directory.mkdir(parents=True, exist_ok=True)
    for device in devices:
        path = directory / f"gpu{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        return device, descriptor
    return None


@contextlib.contextmanager
def gpu_slot(env: MutableMapping[str, str] | None = None, poll_seconds: float = 5.0) -> Iterator[str | None]:
    """Hold one free device for the body and point ``CUDA_VISIBLE_DEVICES`` at it; wait while all are busy.

    Yields the device id, or what SLURM set (or None) where nothing is to be done: inside a SLURM job,
    and on machines without GPUs.
    """
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env:
        yield env.get("CUDA_VISIBLE_DEVICES")
        return
    devices = visible_devices(env)
    if not devices:
        yield None
        return
    directory = lock_dir(env)
    claim = try_claim(devices, directory)
    if claim is None:
        log.info("all GPUs %s are busy (locks in %s); waiting for one to free up", devices, directory)
    while claim is None:
        time.sleep(poll_seconds)
        claim = try_claim(devices, directory)
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
