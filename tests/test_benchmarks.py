"""The GPU benchmark's code path runs on CPU with a tiny shape (the GPU figures need a GPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from tiny import REPO


@pytest.mark.slow
def estimate_of_paper_grid() -> dict:
    from dropbench.plan.estimate import estimate

    return estimate(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), "a100", 1.0)


def test_gpu_grid_throughput_runs_concurrent_jobs_on_cpu_with_a_tiny_shape():
    command = [sys.executable, "gpu_grid_throughput.py", "--device", "cpu", "--tiny", "--jobs", "2",
               "--batch-sizes", "8", "--seconds", "1", "--warmup-steps", "1"]
    result = subprocess.run(command, cwd=REPO / "benchmarks", capture_output=True, text=True, timeout=900,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    paper_cells = int(re.fullmatch(r"paper grid: (\d+) cells, .* training tokens, .* FLOPs", lines[0]).group(1))
    assert paper_cells == estimate_of_paper_grid()["cells"]
    assert re.fullmatch(r"batch  8, 2 job\(s\) on one cpu \(fp32\): [\d.]+ examples/s, .*, paper grid [\d.]+ GPU-hours", lines[1])
    assert float(re.search(r"([\d.]+) examples/s", lines[1]).group(1)) > 0
    assert lines[-1].startswith("best: batch 8, jobs_per_gpu 2:")
