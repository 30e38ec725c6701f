"""Re-running diverged fine-tunes (config ``retry_diverged: N``).

Attempt ``a`` (1..N) reads the dev predictions of the grid and of the retries so far, finds the runs of
the previous attempt (the grid's own runs for attempt 1) that diverged (``significance.diverged_runs``:
at chance while another seed of the cell, or the unpruned model, is clearly above) and lists one retry
per such run: the same cell with seed ``first seed + RETRY_SEED_STEP x a``. A retry is an ordinary cell
at that seed, so fine-tuning, evaluation and predictions are the usual rules, cached like any cell.

The list (``results/retries/attempt<a>.csv``, RETRY_COLUMNS) names the diverged run (``seed``) and the
run that replaces it (``retry_seed``); the summary keeps both, the diverged one with status ``retried``
and out of every mean, interval and test (``dropbench.report.aggregate``, ``dropbench.report.significance``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dropbench.plan.grid import RETRY_SEED_STEP, Cell
from dropbench.report.significance import diverged_runs, load_runs, write_csv

log = logging.getLogger(__name__)

RETRY_COLUMNS = ["model", "strategy", "k", "task", "seed", "retry_seed", "first_seed", "attempt"]


def read_retries(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(path) for path in paths]
    return pd.concat(frames, ignore_index=True).reindex(columns=RETRY_COLUMNS) if frames else pd.DataFrame(columns=RETRY_COLUMNS)


def retry_cells(retries: pd.DataFrame) -> list[Cell]:
    return [Cell(r.model, r.strategy, int(r.k), r.task, int(r.retry_seed)) for r in retries.itertuples(index=False)]


def find_retries(predictions_paths: Iterable[str | Path], earlier: Iterable[str | Path], attempt: int, out_csv: str | Path) -> pd.DataFrame:
    """Write the retries of ``attempt`` (see the module docstring); ``earlier``: the lists of attempts 1..attempt-1."""
    earlier = read_retries(earlier)
    runs = load_runs(predictions_paths)
    previous = earlier[earlier["attempt"] == attempt - 1]
    if attempt == 1:  # the grid's own runs (attempt 1 reads no retries)
        first_seed = {cell: cell.seed for cell in runs}
        candidates = set(runs)
    else:
        first_seed = dict(zip(retry_cells(previous), (int(seed) for seed in previous["first_seed"])))
        candidates = set(first_seed) & set(runs)
    diverged = diverged_runs(runs)
    rows = []
    for d in diverged.itertuples(index=False):
        cell = Cell(d.model, d.strategy, int(d.k), d.task, int(d.seed))
        if cell in candidates:
            first = first_seed[cell]
            rows.append({**cell.as_dict(), "retry_seed": first + RETRY_SEED_STEP * attempt,
                         "first_seed": first, "attempt": attempt})
    retries = pd.DataFrame(rows, columns=RETRY_COLUMNS)
    log.info("attempt %d: %d of %d runs diverged and are re-run", attempt, len(retries), len(candidates))
    write_csv(retries, out_csv)
    return retries
