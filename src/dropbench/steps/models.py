"""The steps of the rules that run in envs/pytorch.yaml (dropbench.steps): staging, features, pruning,
fine-tuning, latency, evaluation, learning-rate selection, statistics, retries.

A step that makes a cell's result records its failure (``results/failed/``, dropbench.plan.integrity) and, on a
GPU machine, holds a GPU slot; the thread count is the job's ``threads``."""

from __future__ import annotations

from dropbench.steps import run_step


# The steps that load a transformers model: torch and the model classes are imported before them, settled
# (dropbench.steps.import_settled). prepare_task needs only the tokenizer, the other steps neither.
MODEL_STEPS = {"prune", "finetune", "frozen_finetune", "iterative_finetune", "evaluate", "measure_latency",
               "layer_profile_scores", "tune_learning_rate"}
MODEL_LIBRARIES = ("torch", "transformers.modeling_utils")


def run(job) -> None:
    run_step(job, STEPS, MODEL_LIBRARIES if job.rule in MODEL_STEPS else ())


def _cell_step(job):
    """A fine-tune or evaluation of one cell: its failure recorded, a GPU slot held, the job's threads."""
    from contextlib import ExitStack

    from dropbench.runtime.device import set_threads
    from dropbench.runtime.gpu_slots import gpu_slot
    from dropbench.runtime.failures import cell_from_wildcards, failure_record

    stack = ExitStack()
    stack.enter_context(failure_record(cell_from_wildcards(job.wildcards), job.rule))
    stack.enter_context(gpu_slot())
    set_threads(job.threads)
    return stack


def _train_config(job):
    from dropbench.plan.job_params import train_settings
    from dropbench.train.loop import TrainConfig

    return TrainConfig.from_dict(train_settings(job.config["training"], job.params.job))


def download_model(job) -> None:
    """The full source, with its sha256/size checks, is in the config; params hold only its identity."""
    from dropbench.data import sources
    from dropbench.runtime.failures import cells_below, stage_failure_record

    model = job.wildcards.model
    with stage_failure_record(cells_below(job.config, model), job.rule):
        sources.stage_model(job.config["models"][model]["source"], job.output[0])


def prepare_task(job) -> None:
    from dropbench.runtime.failures import cells_below, stage_failure_record
    from dropbench.data.prepare import prepare_task as prepare

    params, wildcards = job.params.job, job.wildcards
    with stage_failure_record(cells_below(job.config, wildcards.model, wildcards.task), job.rule):
        prepare(
            model_dir=job.input.model,
            task=wildcards.task,
            source=params["source"],
            out_dir=job.output[0],
            max_length=params["max_length"],
            max_train_examples=params["max_train_examples"],
            seed=params["subsample_seed"],
            held_out=params.get("held_out"),
        )


def prune(job) -> None:
    from dropbench.prune import strategies
    from dropbench.runtime.device import set_threads
    from dropbench.runtime.failures import cells_below, stage_failure_record
    from dropbench.prune.step import prune_step

    wildcards, params = job.wildcards, job.params.job
    task = None if wildcards.scope == "any" else wildcards.scope
    cells = cells_below(job.config, wildcards.model, task, wildcards.strategy, int(wildcards.k))
    with stage_failure_record(cells, job.rule):
        set_threads(job.threads)
        strategies.load_from_config(job.config)
        prune_step(
            model=wildcards.model,
            pretrained_dir=job.input.model,
            out_dir=job.output[0],
            strategy=wildcards.strategy,
            k=int(wildcards.k),
            features_dir=job.input.get("features"),
            scoring=params.get("scoring", job.config["scoring"]),
            scope=wildcards.scope,
            expected_dropped=params.get("dropped"),
            search_record=job.input.get("search"),
        )


def _fine_tune(job, train, **start) -> None:
    """``train`` (dropbench.train.loop.finetune or a family's) from the model(s) in ``start``, under _cell_step."""
    with _cell_step(job):
        train(
            **start,
            features_dir=job.input.features,
            task=job.wildcards.task,
            out_dir=job.output.model,
            state_dir=job.params.state_dir,
            cfg=_train_config(job),
            train_log=job.output.train_log,
        )


def finetune(job) -> None:
    from dropbench.train.loop import finetune as train

    _fine_tune(job, train, model_dir=job.input.model)


def _family_finetune(job) -> None:
    """Rules frozen_finetune and iterative_finetune: dropbench.train.families.<rule name>."""
    from dropbench.train import families

    params = job.params.job
    extra = {"epochs_per_drop": params["epochs_per_drop"]} if "epochs_per_drop" in params else {}
    _fine_tune(job, getattr(families, job.rule), pretrained_dir=job.input.model, pruned_dir=job.input.pruned, **extra)


frozen_finetune = iterative_finetune = _family_finetune


def evaluate(job) -> None:
    """evaluation.batch_size and the latency protocol do not change the scores: read from the config, not params."""
    from dropbench.evaluate.evaluation import write_cell_metrics
    from dropbench.plan.cells import Cell

    with _cell_step(job):
        write_cell_metrics(
            cell=Cell.of(job.params.job["cell"]),
            finetuned_dir=job.input.model,
            source_model_dir=job.input.source_model,
            features_dir=job.input.features,
            train_log=job.input.train_log,
            eval_batch_size=job.config["evaluation"]["batch_size"],
            out_path=job.output[0],
            predictions_path=job.output.predictions,
            tuning_choice=job.input.tuning[0] if job.input.get("tuning") else None,
        )


def measure_latency(job) -> None:
    from dropbench.runtime.device import set_threads
    from dropbench.runtime.gpu_slots import gpu_slot
    from dropbench.evaluate.latency import measure_architecture

    with gpu_slot():
        set_threads(1)  # the job holds every core so that nothing runs beside it, but times one thread
        architecture = {**dict(job.wildcards.items()), "k": int(job.wildcards.k)}
        measure_architecture(job.input.model, job.params.protocol, job.output[0], architecture,
                             full_model_dir=job.input.get("full_model"))


def layer_profile_scores(job) -> None:
    from dropbench.runtime.device import set_threads
    from dropbench.prune.profile_scores import write_layer_profile_scores

    set_threads(job.threads)
    write_layer_profile_scores(
        model=job.wildcards.model,
        task=job.wildcards.task,
        pretrained_dir=job.input.model,
        features_dir=job.input.features,
        scoring=job.params.job["scoring"],
        out_json=job.output[0],
    )


def tune_learning_rate(job) -> None:
    """One selection fine-tune (config tuning, dropbench.train.tuning): the weights are not kept."""
    from dropbench.runtime.device import set_threads
    from dropbench.runtime.gpu_slots import gpu_slot
    from dropbench.train.tuning import tune

    with gpu_slot():
        set_threads(job.threads)
        tune(
            model_dir=job.input.model,
            features_dir=job.input.features,
            task=job.wildcards.task,
            cfg=_train_config(job),
            state_dir=job.params.state_dir,
            out_path=job.output[0],
            eval_batch_size=job.config["evaluation"]["batch_size"],
        )


def choose_learning_rate(job) -> None:
    """The variant's learning rate (config tuning): the best held-out task score, ties to the smaller one; a
    single candidate is recorded as fixed."""
    from dropbench.train.tuning import write_choice

    write_choice(list(job.input), job.output[0], job.params.choice)


def greedy_step(job) -> None:
    """One step of the greedy search (strategy greedy): the candidate with the best held-out score joins the order."""
    from dropbench.prune.greedy import write_step

    write_step(list(job.input.candidates), job.input.get("previous"), job.output[0], job.params.job)


def tuning_table(job) -> None:
    """reports/tuning.csv: per (model, strategy, k, task) and candidate learning rate, its held-out score and the choice."""
    from dropbench.train.tuning import write_summary

    write_summary({tuple(v): path for v, path in zip(job.params.variants, job.input)}, job.output[0])


def find_diverged(job) -> None:
    from dropbench.report.retries import find_retries

    find_retries(
        predictions_paths=job.input.predictions,
        earlier=job.input.earlier,
        attempt=int(job.wildcards.attempt),
        out_csv=job.output[0],
    )


def stats(job) -> None:
    from dropbench.report.significance import write_stats

    write_stats(
        summary_csv=job.input.summary,
        predictions_paths=job.input.predictions,
        stats_csv=job.output.stats,
        diverged_csv=job.output.diverged,
        **job.params.statistics,
    )


STEPS = {
    "download_model": download_model, "prepare_task": prepare_task, "prune": prune, "finetune": finetune,
    "frozen_finetune": frozen_finetune, "iterative_finetune": iterative_finetune, "evaluate": evaluate,
    "measure_latency": measure_latency, "layer_profile_scores": layer_profile_scores,
    "tune_learning_rate": tune_learning_rate, "choose_learning_rate": choose_learning_rate,
    "tuning_table": tuning_table, "greedy_step": greedy_step, "find_diverged": find_diverged, "stats": stats,
}
