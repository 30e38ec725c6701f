"""Concurrent GPU jobs on one workstation get distinct devices (fake device count, no GPU needed)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dropbench.runtime.gpu_slots import (
    COUNT_ENV,
    JOBS_PER_GPU_ENV,
    LOCK_DIR_ENV,
    default_jobs_per_gpu,
    gpu_slot,
    jobs_per_gpu,
    try_claim,
    visible_devices,
)

REPO = Path(__file__).resolve().parents[1]

# A stand-in GPU job: claims a slot, reports CUDA_VISIBLE_DEVICES, holds the slot until stdin closes.
JOB = """
import os, sys
from dropbench.runtime.gpu_slots import gpu_slot
with gpu_slot(poll_seconds=0.05):
    print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    sys.stdin.read()
"""


def start_job(lock_dir: Path, count: int, per_gpu: int = 1) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    env.update({COUNT_ENV: str(count), LOCK_DIR_ENV: str(lock_dir), JOBS_PER_GPU_ENV: str(per_gpu),
                "PYTHONPATH": str(REPO / "src")})
    return subprocess.Popen([sys.executable, "-c", JOB], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def reported_device(job: subprocess.Popen, guard_seconds: float = 120) -> str:
    # The guard only turns a hang into a failure; no test depends on how fast a job gets its slot.
    ready, _, _ = select.select([job.stdout], [], [], guard_seconds)
    assert ready, "the job never got a GPU slot"
    return job.stdout.readline().strip()


def stop(job: subprocess.Popen) -> None:
    if job.poll() is None:
        job.kill()
    job.wait()


def test_concurrent_jobs_get_distinct_devices_and_a_killed_job_frees_its_device(tmp_path):
    jobs = [start_job(tmp_path, count=3) for _ in range(3)]
    try:
        devices = [reported_device(job) for job in jobs]
        assert sorted(devices) == ["0", "1", "2"]
        assert try_claim(["0", "1", "2"], tmp_path) is None  # every slot is held

        victim = jobs[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        claim = try_claim(["0", "1", "2"], tmp_path)
        assert claim is not None and claim[0] == devices[1]

        # All three held again (two jobs and this test): a new job waits, then takes the freed device.
        waiting = start_job(tmp_path, count=3)
        jobs.append(waiting)
        os.close(claim[1])
        assert reported_device(waiting) == devices[1]
    finally:
        for job in jobs:
            stop(job)


def test_slots_come_from_cuda_visible_devices_when_it_narrows_the_machine(tmp_path):
    first_env = {"CUDA_VISIBLE_DEVICES": "2,5", LOCK_DIR_ENV: str(tmp_path)}
    second_env = dict(first_env)
    with gpu_slot(first_env) as first, gpu_slot(second_env) as second:
        assert (first, second) == ("2", "5")
        assert (first_env["CUDA_VISIBLE_DEVICES"], second_env["CUDA_VISIBLE_DEVICES"]) == ("2", "5")
    assert first_env["CUDA_VISIBLE_DEVICES"] == "2,5"  # restored after the job body


def test_inside_a_scheduler_allocation_the_devices_are_left_alone(tmp_path, caplog):
    env = {"SLURM_JOB_ID": "17", "CUDA_VISIBLE_DEVICES": "3", COUNT_ENV: "4", LOCK_DIR_ENV: str(tmp_path / "locks")}
    with caplog.at_level("INFO", logger="dropbench.runtime.gpu_slots"), gpu_slot(env) as device:
        assert device == "3"
        assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "locks").exists()
    assert "SLURM job 17, which chose the GPU: CUDA_VISIBLE_DEVICES=3" in caplog.text  # the job log says where it ran


def test_without_gpus_nothing_is_set(tmp_path):
    env = {COUNT_ENV: "0", LOCK_DIR_ENV: str(tmp_path)}
    with gpu_slot(env) as device:
        assert device is None
        assert "CUDA_VISIBLE_DEVICES" not in env
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_a_bad_fake_count_names_the_value():
    with pytest.raises(ValueError, match=r"DROPBENCH_GPU_COUNT='two'.*whole number"):
        visible_devices({COUNT_ENV: "two"})


def test_several_jobs_share_each_gpu_spread_over_the_devices_first(tmp_path):
    """2 fake GPUs x 2 jobs per GPU: jobs 1-2 get one device each, 3-4 the second slots; a fifth waits."""
    jobs = [start_job(tmp_path, count=2, per_gpu=2) for _ in range(4)]
    try:
        devices = sorted(reported_device(job) for job in jobs)
        assert devices == ["0", "0", "1", "1"]
        assert try_claim(["0", "1"], tmp_path, slots_per_device=2) is None
        jobs[0].kill()
        jobs[0].wait()
        claim = try_claim(["0", "1"], tmp_path, slots_per_device=2)
        assert claim is not None
        os.close(claim[1])
    finally:
        for job in jobs:
            stop(job)


def test_jobs_per_gpu_from_the_environment_or_the_memory_formula(monkeypatch):
    assert jobs_per_gpu({JOBS_PER_GPU_ENV: "3"}) == 3
    with pytest.raises(ValueError, match=r"DROPBENCH_JOBS_PER_GPU='0'.*whole number >= 1"):
        jobs_per_gpu({JOBS_PER_GPU_ENV: "0"})
    assert default_jobs_per_gpu(40 * 1024) == 8  # A100 40 GB, bert-base
    assert default_jobs_per_gpu(16 * 1024) == 3  # V100 16 GB
    assert default_jobs_per_gpu(16 * 1024, parameters=340e6) == 2  # bert-large on a V100
    assert default_jobs_per_gpu(2 * 1024) == 1  # never fewer than one
    monkeypatch.setattr("dropbench.runtime.gpu_slots.shutil.which", lambda name: None)
    assert jobs_per_gpu({}) == 1  # no nvidia-smi: one job per (faked) device


@pytest.mark.parametrize(
    ("env", "cap"),
    [({COUNT_ENV: "3"}, "gpu=3"), ({"CUDA_VISIBLE_DEVICES": "2,5"}, "gpu=2"), ({COUNT_ENV: "0"}, "gpu=1"),
     ({COUNT_ENV: "2", JOBS_PER_GPU_ENV: "4"}, "gpu=8"), ({COUNT_ENV: "0", JOBS_PER_GPU_ENV: "4"}, "gpu=1")],
)
def test_workstation_profile_caps_gpu_jobs_at_the_slots_gpu_slots_hands_out(monkeypatch, env, cap):
    from snakemake.profiles import ProfileConfigFileParser

    for name in (COUNT_ENV, "CUDA_VISIBLE_DEVICES", JOBS_PER_GPU_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with open(REPO / "profiles" / "default" / "config.yaml") as profile:
        settings = ProfileConfigFileParser().parse(profile)
    assert settings["resources"] == [cap]
    assert int(cap.split("=")[1]) == max(1, len(visible_devices()) * jobs_per_gpu())
