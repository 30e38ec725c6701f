from dropbench.exports import export_cell
from dropbench.jobs import log_to

# evaluation.batch_size does not change the scores: read from the config, not params.
with log_to(snakemake.log[0]):
    export_cell(
        publish_dir=snakemake.input.publish,
        metrics_json=snakemake.input.metrics,
        features_dir=snakemake.input.features,
        out=dict(snakemake.output.items()),
        eval_batch_size=snakemake.config["evaluation"]["batch_size"],
        params=snakemake.params.job,
    )
