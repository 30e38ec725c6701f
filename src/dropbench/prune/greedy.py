"""Greedy layer search (strategy ``greedy``; issue 25 item 3), after Peer et al. (2022).

From the full model, one layer more at a time: step s tries every layer not yet dropped, each candidate
being the ordinary subset cell that drops the current s - 1 layers plus that one (``layer<i>`` at s = 1,
``drop_<i>_<j>...`` after; seed: the first of ``seeds``), fine-tuned on the train split less the held-out
rows and scored on those held-out rows (config ``tuning.held_out``; evaluate's ``held_out`` in
metrics.json). The candidate with the best held-out task score is kept (ties: the lower layer). Dev
scores are never read. The step's record, ``results/greedy/<model>/<task>/step<s>.json``, is the output of
the checkpoint ``greedy_step``: step s + 1's candidates are known only once it exists. The cell
``greedy-k<k>`` then drops the first k layers of that order and is trained with every seed like any cell.

A candidate cell is the same cell, at the same path, as the exhaustive grid's subset cell of that k and
seed (config ``subsets``): where both are asked for, it is trained once and the search reuses its held-out
score. The record names each candidate's cell; the oracle report says which of them the grid has too (the
record does not, so that adding ``subsets`` later rewrites no step and re-trains no greedy cell).
"""

from __future__ import annotations

import json
from pathlib import Path

from dropbench.runtime.atomic import write_json
from dropbench.plan.cells import Cell
from dropbench.plan.records import read_cell_metrics
from dropbench.prune.strategies import GREEDY
from dropbench.prune.strategy_names import subset_layers, subset_name


def step_file(model: str, task: str, step: int) -> str:
    return f"results/greedy/{model}/{task}/step{step}.json"


def deepest_searches(cells) -> dict[tuple[str, str], int]:
    """(model, task) -> the largest k of the grid's greedy cells: its search runs steps 1..k."""
    deepest: dict[tuple[str, str], int] = {}
    for cell in cells:
        if cell.strategy == GREEDY:
            deepest[(cell.model, cell.task)] = max(cell.k, deepest.get((cell.model, cell.task), 0))
    return deepest


def chosen_order(record_path: str | Path) -> list[int]:
    """The 1-based layers a step's record has dropped so far, in the order the search dropped them."""
    return [int(layer) for layer in json.loads(Path(record_path).read_text())["order"]]


def candidate_cells(model: str, task: str, seed: int, order: list[int], depth: int) -> list[Cell]:
    """The cells of the next step: ``order`` (1-based, dropped so far) plus each other layer, by layer."""
    if len(order) >= depth - 1:
        raise ValueError(f"greedy search on {model!r}: {len(order)} of {depth} layers are dropped already; "
                         f"at most {depth - 1} can be")
    return [Cell(model, subset_name([*order, layer]), len(order) + 1, task, seed)
            for layer in range(1, depth + 1) if layer not in order]


def choose_step(order: list[int], candidates: list[dict], params: dict) -> dict:
    """The record of one step: ``candidates`` are the candidate cells' metrics.json records; the chosen one
    has the best held-out task score (ties: the lower added layer). ``params``: the job's (model, task,
    step, seed, depth)."""
    rows = []
    for record in candidates:
        cell = Cell.of(record)
        dropped = list(subset_layers(cell.strategy) or ())
        added = [layer for layer in dropped if layer not in order]
        if (cell.model, cell.task, cell.seed, cell.k) != (params["model"], params["task"], params["seed"], params["step"]) \
                or sorted(dropped) != sorted([*order, *added]) or len(added) != 1:
            raise ValueError(f"{cell.name} is not a candidate of greedy step {params['step']} after dropping {order} "
                             f"({params['model']}, {params['task']}, seed {params['seed']})")
        score = (record.get("held_out") or {}).get("task_score")
        if score is None:
            raise ValueError(f"{cell.name} has no score on held-out train rows (metrics.json 'held_out'): the greedy "
                             f"search chooses on them, never on dev; set tuning.held_out in the config")
        rows.append({"strategy": cell.strategy, "cell": cell.name, "added": added[0], "dropped": sorted(dropped),
                     "held_out_task_score": float(score)})
    expected = {c.strategy for c in candidate_cells(params["model"], params["task"], params["seed"], order, params["depth"])}
    if {row["strategy"] for row in rows} != expected:
        raise ValueError(f"greedy step {params['step']} needs the candidates {sorted(expected)}, "
                         f"got {sorted(row['strategy'] for row in rows)}")
    rows.sort(key=lambda row: row["added"])
    best = max(rows, key=lambda row: (row["held_out_task_score"], -row["added"]))
    return {**{key: params[key] for key in ("model", "task", "step", "seed", "depth")},
            "chosen_on": "held_out", "previous_order": list(order), "candidates": rows,
            "added": best["added"], "order": [*order, best["added"]], "chosen": best["strategy"],
            "held_out_task_score": best["held_out_task_score"]}


def write_step(candidate_metrics: list[str], previous_record: str | None, out: str | Path, params: dict) -> dict:
    """Step ``params["step"]``'s record from its candidates' metrics.json (and the previous step's record)."""
    order = chosen_order(previous_record) if previous_record else []
    if len(order) != params["step"] - 1:
        raise ValueError(f"{previous_record} has dropped {order}; greedy step {params['step']} follows {params['step'] - 1} layers")
    record = choose_step(order, [read_cell_metrics(path) for path in candidate_metrics], params)
    write_json(out, record)
    return record
