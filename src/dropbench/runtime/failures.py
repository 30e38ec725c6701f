"""A failed job's record of why, per cell (``results/failed/<cell>.json``, path grammar dropbench.plan.cells): written
by the steps around the work of a cell or of a stage that cells depend on (download, prepare, prune), cleared when
the job succeeds; the summary shows such a cell as failed with its reason."""

from __future__ import annotations

import contextlib
from pathlib import Path

from dropbench.plan import grid
from dropbench.plan.cells import FAILED_ROOT, Cell
from dropbench.plan.integrity import failure_path, read_json_checked
from dropbench.runtime.atomic import write_json


def cell_from_wildcards(wildcards) -> Cell:
    return Cell(wildcards.model, wildcards.strategy, int(wildcards.k), wildcards.task, int(wildcards.seed))


@contextlib.contextmanager
def failure_record(cell: Cell, rule: str, root: str | Path = FAILED_ROOT):
    """Record an exception of ``rule`` for ``cell`` (then re-raise it); clear an old record on success.

    The record is ``{"model", "strategy", "k", "task", "seed", "rule", "error"}``. Interrupts
    (KeyboardInterrupt, SystemExit) are not failures of the cell and are not recorded.
    """
    with stage_failure_record([cell], rule, root, clear_any_rule=True):
        yield


def cells_below(config: dict, model: str, task: str | None = None, strategy: str | None = None,
                k: int | None = None) -> list[Cell]:
    """The cells of ``config`` that use the output of an upstream job (download, prepare, prune)."""
    return [c for c in grid.cells(config)
            if c.model == model and task in (None, c.task) and strategy in (None, c.strategy) and k in (None, c.k)]


@contextlib.contextmanager
def stage_failure_record(cells: list[Cell], rule: str, root: str | Path = FAILED_ROOT, clear_any_rule: bool = False):
    """Record an exception of ``rule`` for each of ``cells`` (then re-raise it); on success clear the
    records this rule left for them (or every record of a cell with ``clear_any_rule``).

    A record is ``{"model", "strategy", "k", "task", "seed", "rule", "error"}``. Interrupts
    (KeyboardInterrupt, SystemExit) are not failures of a cell and are not recorded.
    """
    try:
        yield
    except Exception as err:
        reason = f"{type(err).__name__}: {err}".strip()
        for cell in cells:
            write_json(failure_path(cell, root), {**cell.as_dict(), "rule": rule, "error": reason})
        raise
    for cell in cells:
        path = failure_path(cell, root)
        recorded = read_json_checked(path)[0] if path.exists() else None
        if clear_any_rule or (isinstance(recorded, dict) and recorded.get("rule") == rule):
            path.unlink(missing_ok=True)
