from dropbench.aggregate import aggregate
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    aggregate(
        metrics_paths=snakemake.input.metrics,
        summary_csv=snakemake.output.summary,
        wide_md=snakemake.output.wide_md,
    )
