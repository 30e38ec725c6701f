from dropbench.device import set_threads
from dropbench.jobs import log_to
from dropbench.prune_step import prune_step

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    prune_step(
        model=snakemake.wildcards.model,
        pretrained_dir=snakemake.input.model,
        out_dir=snakemake.output[0],
        strategy=snakemake.wildcards.strategy,
        k=int(snakemake.wildcards.k),
        features_dir=snakemake.input.get("features"),
        scoring=snakemake.params.scoring,
        custom_strategies=snakemake.params.custom_strategies,
    )
