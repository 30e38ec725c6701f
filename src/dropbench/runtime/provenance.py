"""What made a result, recorded beside it (as lm-evaluation-harness records its ``git_hash`` and versions):
the git commit of the workflow checkout and the versions of the libraries a cell's numbers depend on."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]
# The distributions whose code computes a cell: tokenization, the model, training, the metrics.
LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "scipy", "scikit-learn")


def workflow_commit(root: str | Path = CHECKOUT) -> str:
    """The git commit of the workflow checkout at ``root`` ("unknown" outside a git checkout)."""
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def library_versions() -> dict[str, str]:
    """Python's and each of ``LIBRARIES``' installed version ("not installed" where absent)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment() -> dict:
    """The ``environment`` block of a cell's metrics.json: commit and library versions at evaluation time."""
    return {"commit": workflow_commit(), "versions": library_versions()}
