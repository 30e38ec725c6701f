from dropbench.jobs import log_to
from dropbench.prepare import prepare_task

with log_to(snakemake.log[0]):
    prepare_task(
        model_dir=snakemake.input.model,
        task=snakemake.wildcards.task,
        source=snakemake.params.source,
        out_dir=snakemake.output[0],
        max_length=snakemake.params.max_length,
        max_train_examples=snakemake.params.max_train_examples,
        seed=snakemake.params.subsample_seed,
    )
