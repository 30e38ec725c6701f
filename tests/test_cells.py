"""The one grammar of a cell's paths (dropbench.plan.cells): written by Cell, read back by Cell.from_path."""

from __future__ import annotations

import numpy as np
import pytest

from dropbench.evaluate import predictions
from dropbench.report import aggregate, significance
from dropbench.plan import integrity
from dropbench.export import tracking
from dropbench.plan.cells import CELL_DIR, CELL_NAME, Cell

CELLS = [Cell("minilm_l6", "top", 2, "sst2", 1), Cell("m.v-2", "drop_1_4", 2, "mnli", 13),
         Cell("tiny", "none", 0, "stsb", 1001), Cell("x", "cls_above_250", 0, "cola", 0),
         Cell("x", "task_specific_top-k", 3, "rte", 2)]  # a strategy name holding "-k" (refused by config, still read back)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_every_path_of_a_cell_reads_back_as_the_cell(cell):
    assert CELL_DIR.format(**cell.as_dict()) == cell.dir == f"results/cells/{cell.name}"
    for path in (cell.metrics, f"{cell.dir}/predictions.npz", f"/abs/where/{cell.dir}/publish", cell.dir,
                 cell.failure_record, f"logs/evaluate/{CELL_NAME.format(**cell.as_dict())}.log"):
        assert Cell.from_path(path) == cell, path
    assert Cell.of(cell.as_dict()) == cell and Cell.of({**cell.as_dict(), "status": "ok"}) == cell
    assert cell.group == (cell.model, cell.strategy, cell.k, cell.task)  # what seeds are pooled over
    assert cell.at_seed(7) == Cell(cell.model, cell.strategy, cell.k, cell.task, 7)


def test_the_modules_that_name_cells_use_the_one_grammar(tmp_path):
    cell = CELLS[1]
    # the statistics key each run by the Cell its predictions' path names (a record without metrics.json)
    (tmp_path / cell.dir).mkdir(parents=True)
    predictions.save(tmp_path / cell.dir / "predictions.npz", {"validation": (np.array([0, 1]), np.array([0, 1]))}, cell=cell.as_dict())
    assert list(significance.load_runs([tmp_path / cell.dir / "predictions.npz"])) == [cell]
    assert str(integrity.failure_path(cell)) == cell.failure_record
    assert tracking.cell_name(cell.as_dict()) == cell.name
    record = tmp_path / cell.failure_record
    record.parent.mkdir(parents=True)
    record.write_text("{}")  # a record without the cell keys: the cell is read from its path
    assert aggregate.read_failed(tmp_path / "results" / "failed") == {cell: ""}


@pytest.mark.parametrize("path", ["metrics.json", "results/cells/m/top/sst2/seed1/metrics.json",
                                  "results/cells/m/top-kx/sst2/seed1/metrics.json", "results/cells/m/top-k2/sst2/1/x"])
def test_a_path_that_names_no_cell_is_an_error_naming_it(path):
    with pytest.raises(ValueError, match="names no cell"):
        Cell.from_path(path)
