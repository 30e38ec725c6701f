from dropbench import sources
from dropbench.integrity import cells_below, stage_failure_record
from dropbench.jobs import log_to

# The full source, with its sha256/size checks, is in the config; params hold only its identity.
model = snakemake.wildcards.model
with log_to(snakemake.log[0]), stage_failure_record(cells_below(snakemake.config, model), "download_model"):
    sources.stage_model(snakemake.config["models"][model]["source"], snakemake.output[0])
