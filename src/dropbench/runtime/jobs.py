"""Glue between a Snakemake job and the dropbench functions it calls."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path):
    """Send logging, warnings, progress bars (stderr) and stdout of this job to its log file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stderr(handle), contextlib.redirect_stdout(handle):
        logging.basicConfig(
            stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
        )
        logging.captureWarnings(True)
        try:
            yield
        except BaseException:
            logging.exception("job failed")
            raise
