import atexit
import functools
import gc
import hashlib
import os
import sys
from pathlib import Path


# The scripts import the dropbench package from src/; jobs inherit this environment.
SRC = str(Path(workflow.current_basedir).parents[1] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))

# At exit, Snakemake's process freezes its heap, so the interpreter's last garbage collection does not walk
# everything it imported and planned: ~0.25 s of each invocation (a dry run of the tiny test grid takes
# ~1.3 s); the jobs do the same (dropbench.steps).
atexit.register(gc.freeze)


from dropbench.plan import config_check, grid, job_params, optional_packages  # noqa: E402
from dropbench.prune import strategies  # noqa: E402

# Keys given twice in a config file, command-line strings to the schema's types, unknown (e.g. misspelt)
# keys with the closest valid key, the schema (which fills the defaults), then the rest: the same function
# as `dropbench estimate`.
MODEL_DEPTHS = config_check.load_and_check(  # model -> depth, None where known only after download
    config, Path(workflow.current_basedir).parent / "schemas" / "config.schema.yaml", workflow.configfiles
)
CELLS = grid.cells(config)
STRATEGIES_NEEDING_DATA = set(config_check.data_driven(config))
LIGHT_RESOURCES = dict(config["resources"]["light"])  # mem_mb and runtime of the rules that take seconds
PARTIAL_SUMMARY = str(config["partial_summary"]).lower() == "true"
RETRY_DIVERGED = config["retry_diverged"]  # re-runs of diverged fine-tunes: workflow/rules/retry.smk
TUNING = config.get("tuning")  # learning-rate selection on held-out train rows: workflow/rules/tuning.smk
TRACKING = config.get("tracking")  # MLflow runs of the cells: workflow/rules/tracking.smk


def _uses_conda():
    from snakemake.settings.types import DeploymentMethod

    return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


# without `tracking` or `export`: nothing looked up, no mlflow or onnx import
optional_packages.check_optional_packages(config, _uses_conda())


@functools.cache
def code_digest(*modules, files=(), steps="reports"):
    """A digest of the dropbench ``modules`` a report rule's step calls and every module they import (directly or
    not; dropbench.plan.code_digest), of its step module (``dropbench.steps.<steps>``: the scripts never change) and of
    ``files`` of the repository: part of the rule's params, so editing any of that code re-makes the report while
    moving or copying a finished run re-runs nothing."""
    from dropbench.plan import code_digest as digest

    step_module = Path(SRC) / "dropbench" / "steps" / f"{steps}.py"
    return digest.code_digest(modules, [step_module, *(Path(SRC).parent / f for f in files)])


# The integrity check of the grid's results (damaged or stale results forced): integrity.smk, included last.


# On a cluster these run on the submitting node: the download needs the internet (compute nodes often
# lack it) and the report rules take seconds (`stats`, minutes of resampling on a large grid, is submitted).
localrules:
    download_model,
    aggregate,
    plot,
    plot_layer_scores,
    paper_comparison,
    plot_intervals,
    layer_profile,


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


def finetune_model_dir(wildcards):
    """What ``finetune`` starts from: a task_specific_<base> cell's first stage (``frozen_finetune``),
    else the cell's encoder."""
    if strategies.family_of(wildcards.strategy)[0] == strategies.TASK_SPECIFIC:
        w = wildcards
        return f"{grid.Cell(w.model, w.strategy, int(w.k), w.task, int(w.seed)).dir}/frozen_finetune"
    return cell_model_dir(wildcards)


def pretrained_model_dir(wildcards):
    return grid.pretrained_dir(wildcards.model)


def every_core():
    """All of --cores, so that ``measure_latency`` runs with nothing beside it (1 without --cores, as on a
    cluster, where the SLURM profile gives the job its own node)."""
    from snakemake.exceptions import WorkflowError

    try:
        return workflow.cores
    except WorkflowError:
        return 1


def latency_inputs(wildcards):
    """The encoder ``measure_latency`` times (pre-trained for the baseline, else pruned); a pruned one is
    timed beside its full model (dropbench.evaluate.latency)."""
    if wildcards.strategy == grid.BASELINE:
        return {"model": grid.pretrained_dir(wildcards.model)}
    return {
        "model": grid.pruned_dir(wildcards.model, wildcards.strategy, int(wildcards.k), wildcards.scope),
        "full_model": grid.pretrained_dir(wildcards.model),
    }


def latency_files(wildcards=None):
    """One latency measurement per architecture of the grid; the aggregate joins them to the cells,
    so a new latency protocol re-times the architectures and re-runs no evaluate."""
    return _existing_if_partial(latency_files_of_grid())


def latency_files_of_grid():
    return sorted({grid.latency_file(c.model, c.strategy, c.k, prune_scope(c.strategy, c.task)) for c in CELLS})


def prune_inputs(wildcards):
    inputs = {"model": grid.pretrained_dir(wildcards.model)}
    if strategies.is_searched(wildcards.strategy):  # greedy: the search's record of step k (greedy.smk), ancient:
        # a rewritten record re-runs the prune only if its layers changed (prune_params holds them)
        inputs["search"] = ancient(greedy_record(wildcards.model, wildcards.scope, int(wildcards.k)))
    elif wildcards.scope != "any":
        inputs["features"] = grid.features_dir(wildcards.model, wildcards.scope)
    return inputs


# ---- params: exactly what determines each job's output (dropbench.plan.job_params), canonical: a config
# written with its keys in another order plans the same params. The report rules' params that come from
# config mappings go through job_params.canonical too (report.smk, profile.smk); they follow the order of
# `models` and `tasks`, which is the order of the tables' rows.


def download_params(wildcards):
    return job_params.download_params(config["models"][wildcards.model]["source"])


def download_inputs(wildcards):
    return job_params.download_inputs(config["models"][wildcards.model]["source"])


def prepare_params(wildcards):
    return job_params.prepare_params(config["tasks"][wildcards.task], config["training"]["max_length"], config["subsample_seed"],
                                     TUNING)


def prepare_inputs(wildcards):
    return job_params.prepare_inputs(wildcards.task, config["tasks"][wildcards.task]["source"])


def prune_params(wildcards):
    depth = MODEL_DEPTHS[wildcards.model]
    order = None
    if strategies.is_searched(wildcards.strategy):  # an input of the job: its record exists when this is evaluated
        from dropbench.prune.greedy import chosen_order

        order = chosen_order(greedy_record(wildcards.model, wildcards.scope, int(wildcards.k)))
    return job_params.prune_params(wildcards.strategy, int(wildcards.k), depth, config["scoring"], order)


def finetune_params(wildcards):
    """With ``tuning``, the learning rate is the variant's choice (checkpoint choose_learning_rate, an input
    of the job: Snakemake evaluates this once the checkpoint is done): an unchanged choice leaves the params
    as they were, a changed one re-runs that variant's cells."""
    head = config["models"][wildcards.model]["head"]
    training = job_params.model_training(config["training"], config["models"][wildcards.model])
    if TUNING:
        from dropbench.train.tuning import chosen_learning_rate

        training = {**training, "learning_rate": chosen_learning_rate(tuning_choice(wildcards))}
    return job_params.finetune_params(training, int(wildcards.seed), head)


def iterative_params(wildcards):
    head = config["models"][wildcards.model]["head"]
    training = job_params.model_training(config["training"], config["models"][wildcards.model])
    return job_params.iterative_params(training, int(wildcards.seed), head)


def latency_params(wildcards):
    return job_params.latency_params(config["evaluation"]["latency"])


def evaluate_params(wildcards):
    cell = {"model": wildcards.model, "strategy": wildcards.strategy, "k": int(wildcards.k),
            "task": wildcards.task, "seed": int(wildcards.seed)}
    return job_params.evaluate_params(cell)


def metrics_files():
    return [cell.metrics for cell in CELLS]


def model_table_files(model):
    return {fmt: f"reports/tables/{model}.{fmt}" for fmt in ("md", "tex", "html")}


def figure_files(name):
    """The PNG, the PDF and the CSV of the numbers drawn; keys name the plot rules' outputs."""
    stem = f"reports/figures/{name}"
    return {name: f"{stem}.png", f"{name}_pdf": f"{stem}.pdf", f"{name}_data": f"{stem}.csv"}


# Results a damaged result discredits (dropbench.plan.integrity.find_damaged): left out of a partial report,
# which recomputes nothing (set at the end of this file, main process only).
DISCREDITED = set()


def _existing_if_partial(paths):
    # `--config partial_summary=true` aggregates what exists (after --keep-going with failures), less what
    # a damaged result discredits; the cells without results show as missing.
    return [path for path in paths if os.path.exists(path) and path not in DISCREDITED] if PARTIAL_SUMMARY else paths


def summary_train_logs(wildcards):
    """The train logs of the cells the summary reads (the training-loss figure). A finished cell whose train
    log was deleted (an intermediate, like its weights) is left out of the figure rather than trained again."""
    metrics = summary_metrics(wildcards)
    logs = [os.path.join(os.path.dirname(path), "train_log.json") for path in metrics]
    return [log for log, path in zip(logs, metrics) if os.path.exists(log) or not os.path.exists(path)]


def summary_metrics(wildcards):
    if not PARTIAL_SUMMARY:
        return metrics_files() + [cell.metrics for cell in retried_cells()]
    # A cell whose last attempt failed (e.g. its data changed, then prepare_task failed) shows as
    # failed with the reason, not with its old result.
    from dropbench.plan.integrity import failure_path

    cells = CELLS + retried_cells()
    return [cell.metrics for cell in cells
            if os.path.exists(cell.metrics) and cell.metrics not in DISCREDITED and not failure_path(cell).exists()]


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
    return [c.as_dict() for c in CELLS]


def missing_label(summary_csv, model=None):
    """'<missing> of <expected> cells', shown beside each table and figure in the HTML report."""
    import csv

    with open(summary_csv, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "task_score" and model in (None, r["model"])]
    return f"{sum(r['status'] in ('missing', 'failed') for r in rows)} of {len(rows)} cells"  # degenerate cells have results


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
            labels=lambda wildcards, input, model=model: {"model": model, "missing": missing_label(input.summary, model)},
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


# ---- statistics (issue 14): per-cell dev predictions feed results/stats.csv; the paper comparison
# reads the summary (rules stats and paper_comparison at the end of report.smk).


def summary_predictions(wildcards):
    cells = [cell for cell in CELLS + retried_cells() if cell.metrics not in DISCREDITED]
    return _existing_if_partial([f"{cell.dir}/predictions.npz" for cell in cells])


# ---- layer-importance profile (issue 15 item 4; config `layer_profile`, rules in profile.smk)
PROFILE_MODELS = grid.profile_models(config)


def profile_strategy_order():
    """layer1, layer2, ... after the config's strategies in the tables (not layer1, layer10, layer11, ...),
    then the named subsets of config ``subsets`` (drop_1_2, drop_1_3, ..., by k)."""
    depth = max((config["models"][model]["num_layers"] for model in PROFILE_MODELS), default=0)
    order = [f"layer{i}" for i in range(1, depth + 1)]
    for model in grid.subset_models(config):
        order += [s for s, _ in grid.subset_variants(config["models"][model], config["subsets"]["k"]) if s not in order]
    return order


def profile_score_files(wildcards=None):
    return [f"results/layer_profile/{model}/{task}/scores.json" for model in PROFILE_MODELS for task in config["tasks"]]


def profile_scores_params(wildcards):
    return job_params.profile_scores_params(config["scoring"])


def profile_outputs():
    """The profile's tables, markdown and figures; nothing when `layer_profile` names no model."""
    if not PROFILE_MODELS:
        return {}
    return {"md": "reports/layer_profile.md", "importance_csv": "reports/layer_profile_importance.csv",
            "halves_csv": "reports/layer_profile_halves.csv", "correlations_csv": "reports/layer_profile_correlations.csv",
            **figure_outputs("layer_importance", "layer importance", "Layer profile", lambda input: missing_label(input.summary)),
            **figure_outputs("layer_score_correlation", "cheap scores vs importance", "Layer profile", lambda input: missing_label(input.summary))}


# ---- retries of diverged fine-tunes (config retry_diverged; checkpoint find_diverged in retry.smk, dropbench.report.retries)


def retry_lists(wildcards=None, attempts=None):
    """The retry lists of attempts 1..attempts (default: all retry_diverged of them)."""
    attempts = RETRY_DIVERGED if attempts is None else attempts
    if PARTIAL_SUMMARY:  # aggregate what exists; never start fine-tunes (no checkpoint in a partial report)
        return [path for a in range(1, attempts + 1) if os.path.exists(path := f"results/retries/attempt{a}.csv")]
    return [checkpoints.find_diverged.get(attempt=a).output[0] for a in range(1, attempts + 1)]


def retried_cells(attempts=None):
    """The cells of the retries of attempts 1..attempts."""
    attempts = RETRY_DIVERGED if attempts is None else attempts
    if attempts == 0:  # no retries: spare every planning run dropbench.report.retries' import of scipy (~1 s)
        return []
    from dropbench.report.retries import read_retries, retry_cells

    return retry_cells(read_retries(retry_lists(attempts=attempts)))


def find_diverged_inputs(wildcards):
    earlier = int(wildcards.attempt) - 1
    cells = CELLS + retried_cells(earlier)
    return {"predictions": [f"{cell.dir}/predictions.npz" for cell in cells], "earlier": retry_lists(attempts=earlier)}


# ---- greedy search (strategy `greedy`; checkpoint in greedy.smk, dropbench.prune.greedy)


def greedy_record(model, task, step):
    """Step ``step``'s record, once the checkpoint has made it (IncompleteCheckpointException before)."""
    return checkpoints.greedy_step.get(model=model, task=task, step=step).output[0]


def greedy_step_inputs(wildcards):
    from dropbench.prune.greedy import candidate_cells, chosen_order

    step, inputs, order = int(wildcards.step), {}, []
    if step > 1:
        inputs["previous"] = greedy_record(wildcards.model, wildcards.task, step - 1)
        order = chosen_order(inputs["previous"])
    cells = candidate_cells(wildcards.model, wildcards.task, config["seeds"][0], order, MODEL_DEPTHS[wildcards.model])
    inputs["candidates"] = [cell.metrics for cell in cells]
    return inputs


def greedy_step_params(wildcards):
    """The search's identity; which candidates the grid has too is left to the oracle report (so adding `subsets`
    later rewrites no step)."""
    return {"model": wildcards.model, "task": wildcards.task, "step": int(wildcards.step), "seed": config["seeds"][0],
            "depth": MODEL_DEPTHS[wildcards.model]}


# ---- the best-subset oracle (config `subsets`; rule in oracle.smk, dropbench.report.oracle)


def oracle_outputs():
    """reports/oracle.md, its CSVs and figure (every subset ranked, the heuristics among them)."""
    return {"md": "reports/oracle.md", "subsets_csv": "reports/oracle_subsets.csv",
            "heuristics_csv": "reports/oracle_heuristics.csv", "additivity_csv": "reports/oracle_additivity.csv",
            **figure_outputs("oracle", "strategies among every subset", "Oracle", lambda input: missing_label(input.summary))}


def oracle_greedy_records(wildcards=None):
    """Every step record of the greedy searches of the subset models (strategy greedy; greedy.smk)."""
    from dropbench.prune.greedy import deepest_searches, step_file

    models = set(grid.subset_models(config))
    return _existing_if_partial([step_file(m, t, s) for (m, t), k in deepest_searches(CELLS).items() if m in models
                                 for s in range(1, k + 1)])


def oracle_metrics(wildcards=None):
    """The metrics.json of every cell of the subset models (their held-out scores choose the honest oracle)."""
    models = set(grid.subset_models(config))
    return _existing_if_partial([cell.metrics for cell in CELLS if cell.model in models])


def oracle_targets():
    """The oracle report where config `subsets` names a model; nothing otherwise."""
    return [oracle_outputs()["md"]] if grid.subset_models(config) else []


# ---- learning-rate selection (config `tuning`; rules in tuning.smk, dropbench.train.tuning)


def tuning_choice(wildcards):
    """The variant's choice.json, once the checkpoint has made it (IncompleteCheckpointException before)."""
    return checkpoints.choose_learning_rate.get(model=wildcards.model, strategy=wildcards.strategy, k=wildcards.k,
                                                task=wildcards.task).output[0]


def tuning_choice_input(wildcards):
    """The finetune and evaluate input: the choice, ancient (the checkpoint rewrites it whenever a candidate
    is added; an unchanged choice must not re-run a fine-tune by its time), or nothing without `tuning`."""
    return [ancient(tuning_choice(wildcards))] if TUNING else []


def tuning_candidates(wildcards):
    from dropbench.train.tuning import candidate_file

    w = wildcards
    return [candidate_file(w.model, w.strategy, w.k, w.task, lr) for lr in job_params.selection_rates(TUNING)]


def tune_params(wildcards):
    from dropbench.train.tuning import lr_name

    head = config["models"][wildcards.model]["head"]
    lr = float(wildcards.lr)
    if lr_name(lr) != wildcards.lr:  # one file per learning rate: lr1e-4 would duplicate lr0.0001
        raise ValueError(f"learning rate {wildcards.lr!r} is not written as {lr_name(lr)!r}")
    return job_params.tune_params(config["training"], TUNING, lr, head)


def tuning_choice_files(wildcards=None):
    """Every variant's choice of the grid (reports/tuning.csv), or those that exist in a partial summary."""
    from dropbench.train.tuning import choice_file

    if not TUNING:
        return []
    files = dict.fromkeys(choice_file(c.model, c.strategy, c.k, c.task) for c in CELLS)
    return _existing_if_partial(list(files))


def tuning_outputs():
    """reports/tuning.csv (every candidate's held-out score and the choice per variant); nothing without `tuning`."""
    return ["reports/tuning.csv"] if TUNING else []


def sensitivity_outputs():
    """reports/sensitivity.md and its CSVs where there is something to compare: config sensitivity (model
    entries of one checkpoint) or tuning's selection (two or more learning-rate candidates)."""
    return ["reports/sensitivity.md"] if config["sensitivity"] or job_params.selection_rates(TUNING) else []


def sensitivity_tuning_input():
    """reports/tuning.csv where the sensitivity report compares learning-rate candidates (a selection), else nothing."""
    return tuning_outputs() if job_params.selection_rates(TUNING) else []


def tuning_variants(wildcards=None):
    """The (model, strategy, k, task) of each choice file, in the order of tuning_choice_files."""
    from dropbench.train.tuning import choice_file

    variants = dict.fromkeys((c.model, c.strategy, c.k, c.task) for c in CELLS)
    files = set(tuning_choice_files())
    return [list(v) for v in variants if choice_file(*v) in files]


# ---- model cards (issue 26; rule model_card in card.smk, dropbench.report.model_card)
def card_params(wildcards):
    cell = {"model": wildcards.model, "strategy": wildcards.strategy, "k": int(wildcards.k),
            "task": wildcards.task, "seed": int(wildcards.seed)}
    return job_params.card_params(cell, config["models"][wildcards.model])


def card_folders():
    """One publishable folder per cell of the grid."""
    return [f"{cell.dir}/publish" for cell in CELLS]


# Exports (config `export`; export.smk): one seed's cells of the chosen variants.
EXPORT_CELLS = grid.export_cells(config)


def _export_cell(wildcards):
    return grid.Cell(wildcards.model, wildcards.strategy, int(wildcards.k), wildcards.task, grid.export_seed(config))


def export_cell_inputs(wildcards):
    """The cell's publishable folder (its model card's output), its result and the task's dev features. The card
    is ancient, as for track_cell: every card is rewritten whenever results/stats.csv changes, which must not
    re-export a cell (a new metrics.json does); --forcerun export_cell copies the current card."""
    cell = _export_cell(wildcards)
    return {"publish": ancient(f"{cell.dir}/publish"), "metrics": cell.metrics, "features": grid.features_dir(cell.model, cell.task)}


def export_params(wildcards):
    cell = _export_cell(wildcards)
    return job_params.export_params({key: getattr(cell, key) for key in job_params.CELL_KEYS})


def export_table():
    """reports/exports.csv where the config exports cells (the Pareto figure draws their points), else nothing."""
    return ["reports/exports.csv"] if EXPORT_CELLS else []


def export_targets():
    return ["reports/exports.md", *export_table()] if EXPORT_CELLS else []


def tracking_markers():
    """With `tracking`: one marker per cell of the grid, written once the cell is logged as an MLflow run."""
    if not TRACKING:
        return []
    return [f"results/tracking/mlflow/{c.name}.json" for c in CELLS]
