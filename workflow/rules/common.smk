import os
import sys
from pathlib import Path

from snakemake.utils import validate

# The scripts import the dropbench package from src/; jobs inherit this environment.
SRC = str(Path(workflow.current_basedir).parents[1] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))


validate(config, "../schemas/config.schema.yaml")

from dropbench import config_check, grid  # noqa: E402

config_check.check(config)
CELLS = grid.cells(config)
STRATEGIES_NEEDING_DATA = set(config_check.data_driven(config))

# ---- integrity (issue 8): keys given twice in a config file are errors; corrupt or truncated
# results of this grid are removed before planning, so that exactly those are recomputed.
# Header reads only; run by the main snakemake process, not again inside each job.
config_check.check_config_files(workflow.configfiles)
if workflow.is_main_process:
    from dropbench import integrity

    for _problem in integrity.remove(integrity.find_corrupt(CELLS, STRATEGIES_NEEDING_DATA)):
        print(f"WARNING: removed corrupt result {_problem}; it will be recomputed", file=sys.stderr)
# ---- end integrity


wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    strategy=r"[a-z0-9_]+",
    k=r"\d+",
    task=r"[a-z0-9_]+",
    seed=r"\d+",
    scope=r"[a-z0-9_]+",


def prune_scope(strategy, task):
    return task if strategy in STRATEGIES_NEEDING_DATA else "any"


def cell_model_dir(wildcards):
    """The encoder a cell fine-tunes: the pre-trained one for the baseline, else its pruned copy."""
    if wildcards.strategy == grid.BASELINE:
        return grid.pretrained_dir(wildcards.model)
    scope = prune_scope(wildcards.strategy, wildcards.task)
    return grid.pruned_dir(wildcards.model, wildcards.strategy, int(wildcards.k), scope)


def latency_model_dir(wildcards):
    """The encoder whose latency ``measure_latency`` times: pre-trained (baseline) or pruned."""
    if wildcards.strategy == grid.BASELINE:
        return grid.pretrained_dir(wildcards.model)
    return grid.pruned_dir(wildcards.model, wildcards.strategy, int(wildcards.k), wildcards.scope)


def cell_latency_file(wildcards):
    scope = prune_scope(wildcards.strategy, wildcards.task)
    return f"results/latency/{wildcards.model}/{wildcards.strategy}-k{wildcards.k}/{scope}.json"


def prune_inputs(wildcards):
    inputs = {"model": grid.pretrained_dir(wildcards.model)}
    if wildcards.scope != "any":
        inputs["features"] = grid.features_dir(wildcards.model, wildcards.scope)
    return inputs


def task_source(wildcards):
    return config["tasks"][wildcards.task]["source"]


def cell_params(wildcards):
    return {
        "model": wildcards.model,
        "strategy": wildcards.strategy,
        "k": int(wildcards.k),
        "task": wildcards.task,
        "seed": int(wildcards.seed),
    }


def metrics_files():
    return [cell.metrics for cell in CELLS]


def report_outputs():
    tables = [path for model in config["models"] for path in model_table_files(model).values()]
    figures = [path for name in FIGURES for path in figure_files(name).values()]
    return ["reports/missing_cells.csv", "reports/missing_cells.html"] + tables + figures


FIGURES = ["score_vs_dropped", "retained_heatmap", "pareto", "layer_scores"]


def model_table_files(model):
    return {fmt: f"reports/tables/{model}.{fmt}" for fmt in ("md", "tex", "html")}


def figure_files(name):
    """The PNG, the PDF and the CSV of the numbers drawn; keys name the plot rules' outputs."""
    stem = f"reports/figures/{name}"
    return {name: f"{stem}.png", f"{name}_pdf": f"{stem}.pdf", f"{name}_data": f"{stem}.csv"}


def _existing_if_partial(paths):
    # `--config partial_summary=true` aggregates what exists (after --keep-going with failures);
    # the cells without results show as missing.
    return [path for path in paths if os.path.exists(path)] if config.get("partial_summary") else paths


def summary_metrics(wildcards):
    return _existing_if_partial(metrics_files())


def layer_score_dirs(wildcards):
    """The prune directories whose pruning.json holds per-layer scores (data-driven strategies)."""
    dirs = {
        grid.pruned_dir(cell.model, cell.strategy, cell.k, prune_scope(cell.strategy, cell.task))
        for cell in CELLS
        if cell.strategy in STRATEGIES_NEEDING_DATA
    }
    return _existing_if_partial(sorted(dirs))


def expected_cells():
    """The grid as plain dicts: the aggregate rule lists those without metrics as missing."""
    return [{"model": c.model, "strategy": c.strategy, "k": c.k, "task": c.task, "seed": c.seed} for c in CELLS]


def missing_label(summary_csv, model=None):
    """'<missing> of <expected> cells', shown beside each table and figure in the HTML report."""
    import csv

    with open(summary_csv, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "task_score" and model in (None, r["model"])]
    return f"{sum(r['status'] != 'ok' for r in rows)} of {len(rows)} cells"


def model_table_outputs():
    """Named outputs md_<model>, tex_<model>, html_<model>; the HTML goes into the report."""
    outputs = {}
    for model, files in ((model, model_table_files(model)) for model in config["models"]):
        outputs[f"md_{model}"] = files["md"]
        outputs[f"tex_{model}"] = files["tex"]
        outputs[f"html_{model}"] = report(
            files["html"],
            caption="../report/model_tables.rst",
            category="Tables",
            subcategory="Scores per model",
            labels=lambda wildcards, output, model=model: {"model": model, "missing": missing_label(output.summary, model)},
        )
    return outputs


def figure_outputs(name, title, subcategory, count_missing):
    """A figure's outputs (see figure_files), the PNG marked for the report; captions: workflow/report/<name>.rst."""
    outputs = figure_files(name)
    outputs[name] = report(
        outputs[name],
        caption=f"../report/{name}.rst",
        category="Figures",
        subcategory=subcategory,
        labels=lambda wildcards, input: {"figure": title, "missing": count_missing(input)},
    )
    return outputs


def all_outputs():
    return metrics_files() + ["results/summary.csv"] + report_outputs()
