from dropbench.jobs import log_to
from dropbench.plots import plot_layer_scores

with log_to(snakemake.log[0]):
    plot_layer_scores(
        pruning_dirs=snakemake.input.pruned,
        outputs=dict(snakemake.output.items()),
        style=snakemake.params.style,
    )
