from dropbench.jobs import log_to
from dropbench.retries import find_retries

with log_to(snakemake.log[0]):
    find_retries(
        predictions_paths=snakemake.input.predictions,
        earlier=snakemake.input.earlier,
        attempt=int(snakemake.wildcards.attempt),
        out_csv=snakemake.output[0],
    )
