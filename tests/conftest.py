"""Fixtures shared by the test modules, and the finished tiny run that workflow tests start from.

The workflow tests' module-scoped fixtures are finished runs that the module's tests then change in order (each
module's docstrings say how): run one of its tests alone with ``-k`` and it may plan differently.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest
import yaml

BASE_RUN = {"strategies": ("top",), "k": (1,)}  # with tiny_config's model, SST-2 alone, seed 1


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread, as the workflow's jobs use; several threads on a busy 2-core machine are 20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fake_clock():
    """Training state is saved by wall time: a clock that advances one minute per reading makes
    ``checkpoint_minutes=3`` save after steps 3, 6, 9, ... (one extra reading after each save)."""
    import itertools

    from dropbench.train import loop as train

    real = train._clock
    ticks = itertools.count(step=60.0)
    train._clock = lambda: next(ticks)
    yield
    train._clock = real


@pytest.fixture(scope="session")
def base_run(tmp_path_factory, worker_id) -> Path:
    """The tiny model's grid ``BASE_RUN`` run to the end once per test session, paths relative to its directory
    so that a copy is a finished run (``shared_run``)."""
    from workflow_runner import finished_tiny_run

    return shared_run(tmp_path_factory, worker_id, "base_run",
                      lambda target: finished_tiny_run(target, relative_paths=True, **BASE_RUN))


@pytest.fixture(scope="session")
def base_run_3_layers(tmp_path_factory, worker_id) -> Path:
    """``base_run`` with a 3-layer tiny BERT, for the tests that enumerate every layer or subset."""
    from workflow_runner import finished_tiny_run

    return shared_run(tmp_path_factory, worker_id, "base_run_3_layers",
                      lambda target: finished_tiny_run(target, relative_paths=True, layers=3, **BASE_RUN))


def shared_run(tmp_path_factory, worker_id, name: str, build) -> Path:
    """``build(directory)`` once per test session: the first xdist worker to ask builds it, behind a lock, the
    others wait for it and take the same directory."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if worker_id != "master" else root  # the xdist workers' shared session directory
    target = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            build(target)
            (root / f"{name}.done").write_text("")
    return target


def copy_of_base_run(base: Path, workdir: Path) -> dict:
    """A finished copy of ``base_run`` (or ``base_run_3_layers``) in ``workdir`` (file times and Snakemake's metadata kept: it plans
    nothing); returns its config."""
    shutil.copytree(base, workdir, symlinks=True, dirs_exist_ok=True)
    return yaml.safe_load((workdir / "config.yaml").read_text())


def fresh_copy_of_base_run(base: Path, workdir: Path) -> Path:
    """``workdir`` with base_run's config and inputs (tiny model, GLUE rows) but none of its results: the grid
    as a user starts it."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(base / "config.yaml", workdir)
    for inputs in ("tiny_model", "glue"):  # base_run's inputs
        shutil.copytree(base / inputs, workdir / inputs)
    return workdir
