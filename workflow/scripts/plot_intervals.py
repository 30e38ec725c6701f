from dropbench.jobs import log_to
from dropbench.plots import plot_score_intervals

with log_to(snakemake.log[0]):
    plot_score_intervals(stats_csv=snakemake.input.stats, outputs=dict(snakemake.output.items()), style=snakemake.params.style)
