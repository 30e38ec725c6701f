"""The package shows the stages (issue 23 item 5): planning stays import-light, modules stay short."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "dropbench"
# What the main Snakemake process imports to plan (workflow/rules/common.smk): the plan package and the few
# modules whose plan-time parts it calls.
PLANNING = sorted(f"dropbench.plan.{p.stem}" for p in (PACKAGE / "plan").glob("*.py") if p.stem != "__init__") + [
    "dropbench.prune.strategies", "dropbench.prune.strategy_names", "dropbench.prune.greedy", "dropbench.train.tuning",
    "dropbench.data.tasks"]
HEAVY = ("torch", "transformers", "pandas", "matplotlib", "scipy", "sklearn")
# What a per-cell job imports (prune, finetune, evaluate, latency: one process each, hundreds per grid): the
# task table, not the pandas readers, which only prepare_task needs (~0.2 s a process on this 2-core VM), and
# no scipy.stats (~0.4 s; the metrics import it only to rank ties).
CELL_STEPS = ["dropbench.prune.step", "dropbench.train.loop", "dropbench.evaluate.evaluation",
              "dropbench.evaluate.latency"]
MAX_LINES = 400


def test_planning_imports_neither_torch_nor_pandas():
    code = ("import importlib, json, sys\n"
            f"for name in {PLANNING!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src")}, check=True)
    assert json.loads(result.stdout) == [], f"planning imports {result.stdout.strip()} (through {PLANNING})"
    assert "dropbench.plan.config_check" in PLANNING and len(PLANNING) >= 8


def test_the_per_cell_steps_import_neither_pandas_nor_scipy_stats():
    code = ("import importlib, json, sys\n"
            f"for name in {CELL_STEPS!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in ('pandas', 'scipy.stats', 'torch') if m in sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src")}, check=True)
    assert json.loads(result.stdout) == ["torch"], f"the per-cell steps import {result.stdout.strip()}"


def test_every_module_lives_in_a_stage_package():
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"modules outside the stage packages: {flat}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"plan", "data", "prune", "train", "evaluate", "report", "export", "runtime", "steps"}


def test_no_module_is_over_the_limit():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}, f"over {MAX_LINES} lines (split them): {too_long}"
    assert len(sizes) > 40 and max(sizes.values()) > 300  # it read the package
