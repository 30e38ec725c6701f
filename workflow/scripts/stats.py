from dropbench.jobs import log_to
from dropbench.significance import write_stats

with log_to(snakemake.log[0]):
    write_stats(
        summary_csv=snakemake.input.summary,
        predictions_paths=snakemake.input.predictions,
        stats_csv=snakemake.output.stats,
        diverged_csv=snakemake.output.diverged,
        **snakemake.params.statistics,
    )
