from dropbench import sources
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    sources.stage_model(snakemake.params.source, snakemake.output[0])
