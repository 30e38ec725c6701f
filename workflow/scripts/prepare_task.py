from dropbench.integrity import cells_below, stage_failure_record
from dropbench.jobs import log_to
from dropbench.prepare import prepare_task

params, wildcards = snakemake.params.job, snakemake.wildcards
with log_to(snakemake.log[0]), stage_failure_record(cells_below(snakemake.config, wildcards.model, wildcards.task), "prepare_task"):
    prepare_task(
        model_dir=snakemake.input.model,
        task=wildcards.task,
        source=params["source"],
        out_dir=snakemake.output[0],
        max_length=params["max_length"],
        max_train_examples=params["max_train_examples"],
        seed=params["subsample_seed"],
        held_out=params.get("held_out"),
    )
