"""A cell of the grid (model, strategy, k, task, seed) and the one grammar of its paths.

Import-light on purpose (no numpy, no torch): planning, the report steps and the tracking step all name cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

BASELINE = "none"

# The one grammar of a cell's paths, in Snakemake's wildcard syntax: CELL_NAME names a cell under any root
# (results/cells/<name>/, results/failed/<name>.json, logs/<rule>/<name>.log, ...); the rules build their paths
# from these, Cell.dir and Cell.name fill them in, Cell.from_path reads them back.
VARIANT = "{strategy}-k{k}"  # a strategy at one k: cells of every task and seed, and where per-variant files go
CELL_NAME = f"{{model}}/{VARIANT}/{{task}}/seed{{seed}}"
CELLS_ROOT = "results/cells"
CELL_DIR = f"{CELLS_ROOT}/{CELL_NAME}"
FAILED_ROOT = "results/failed"
CELL_KEYS = ("model", "strategy", "k", "task", "seed")


def variant_name(strategy: str, k) -> str:
    """``<strategy>-k<k>``, e.g. ``top-k2``: how paths, comparisons and labels name a strategy at one k."""
    return VARIANT.format(strategy=strategy, k=k)


@dataclass(frozen=True, order=True)
class Cell:
    model: str
    strategy: str
    k: int
    task: str
    seed: int

    @property
    def is_baseline(self) -> bool:
        return self.strategy == BASELINE

    @property
    def variant(self) -> str:
        return variant_name(self.strategy, self.k)

    @property
    def group(self) -> tuple:
        """(model, strategy, k, task): the cell but its seed, what seeds are pooled over (a row of the tables)."""
        return self.model, self.strategy, self.k, self.task

    def at_seed(self, seed: int) -> "Cell":
        return Cell(self.model, self.strategy, self.k, self.task, seed)

    @property
    def name(self) -> str:
        """``<model>/<strategy>-k<k>/<task>/seed<seed>``: the cell under any root, and its id in tags and messages."""
        return CELL_NAME.format(**self.as_dict())

    @property
    def dir(self) -> str:
        return f"{CELLS_ROOT}/{self.name}"

    @property
    def metrics(self) -> str:
        return f"{self.dir}/metrics.json"

    @property
    def failure_record(self) -> str:
        """Where a failed job of the cell records why (dropbench.runtime.failures.failure_record)."""
        return f"{FAILED_ROOT}/{self.name}.json"

    def as_dict(self) -> dict:
        """The cell at the JSON edge (metrics.json, predictions.npz, params): its keys in CELL_KEYS order."""
        return {key: getattr(self, key) for key in CELL_KEYS}

    @classmethod
    def of(cls, mapping) -> "Cell":
        """The cell a record (or any mapping with the cell keys) names; a Cell is itself."""
        return mapping if isinstance(mapping, Cell) else cls(*(mapping[key] for key in CELL_KEYS))

    @classmethod
    def from_path(cls, path) -> "Cell":
        """The cell whose name ends ``path``: ``.../<model>/<strategy>-k<k>/<task>/seed<seed>`` followed by
        ``/<file>`` or ``.json`` (a failure record). ValueError naming the path if it names none."""
        parts = PurePath(path).parts
        for tail in (parts[-5:-1], (*parts[-4:-1], PurePath(parts[-1]).stem) if parts else ()):
            if len(tail) == 4:
                model, variant, task, seed = tail
                strategy, _, k = variant.rpartition("-k")
                if strategy and k.isdigit() and seed.startswith("seed") and seed[4:].isdigit():
                    return cls(model, strategy, int(k), task, int(seed[4:]))
        raise ValueError(f"{path} names no cell (expected .../{CELL_NAME}/<file> or .../{CELL_NAME}.json)")
