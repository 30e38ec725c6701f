"""Shared setup for the benchmarks: the default model staged from its PyPI package, GLUE rows from resources/."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml  # noqa: E402

from dropbench.data import sources  # noqa: E402


def default_model_dir() -> Path:
    """Stage the default config's first model (all-MiniLM-L6-v2) into a temp dir, verified."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    source = next(iter(config["models"].values()))["source"]
    out = Path(tempfile.mkdtemp(prefix="dropbench-bench-")) / "model"
    sources.stage_model(source, out)
    return out


def glue_source(folder: str) -> dict:
    return {"kind": "local", "path": str(REPO / "resources" / "glue" / folder)}
