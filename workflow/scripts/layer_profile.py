from dropbench.jobs import log_to
from dropbench.layer_profile import write_layer_profile

with log_to(snakemake.log[0]):
    write_layer_profile(
        summary_csv=snakemake.input.summary,
        stats_csv=snakemake.input.stats,
        score_jsons=snakemake.input.scores,
        depths=snakemake.params.depths,
        tasks=snakemake.params.tasks,
        outputs=dict(snakemake.output.items()),
        style=snakemake.params.style,
    )
