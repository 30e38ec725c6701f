"""The benchmarks run: the GPU benchmark's code path on CPU with a tiny shape (the GPU figures need a GPU), and
the job-process benchmarks once each (their figures are in the README, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from tiny import REPO


def run_benchmark(script: str, *args: str) -> list[str]:
    result = subprocess.run([sys.executable, script, *args], cwd=REPO / "benchmarks", capture_output=True, text=True,
                            timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def estimate_of_paper_grid() -> dict:
    from dropbench.plan.estimate import estimate

    return estimate(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), "a100", 1.0)


@pytest.mark.slow
def test_gpu_grid_throughput_runs_concurrent_jobs_on_cpu_with_a_tiny_shape():
    lines = run_benchmark("gpu_grid_throughput.py", "--device", "cpu", "--tiny", "--jobs", "2", "--batch-sizes", "8",
                          "--seconds", "1", "--warmup-steps", "1")
    paper_cells = int(re.fullmatch(r"paper grid: (\d+) cells, .* training tokens, .* FLOPs", lines[0]).group(1))
    assert paper_cells == estimate_of_paper_grid()["cells"]
    assert re.fullmatch(r"batch  8, 2 job\(s\) on one cpu \(fp32\): [\d.]+ examples/s, .*, paper grid [\d.]+ GPU-hours", lines[1])
    assert float(re.search(r"([\d.]+) examples/s", lines[1]).group(1)) > 0
    assert lines[-1].startswith("best: batch 8, jobs_per_gpu 2:")


@pytest.mark.slow
def test_the_evaluate_overhead_benchmark_runs_the_evaluate_steps_work():
    """It calls write_cell_metrics as the evaluate step does (it once broke silently when cells became Cells)."""
    last = run_benchmark("evaluate_overhead.py", "--repeats", "1")[-1]
    assert re.fullmatch(r"evaluate_overhead_s: -?[\d.]+", last)


@pytest.mark.slow
def test_the_job_process_benchmark_prints_its_ratio():
    last = run_benchmark("job_process.py", "--repeats", "1")[-1]
    assert re.fullmatch(r"job_process_cpu_ratio: [\d.]+", last) and float(last.split()[1]) > 0
