from dropbench.jobs import log_to
from dropbench.tracking import log_cell

with log_to(snakemake.log[0]):
    log_cell(
        metrics_json=snakemake.input.metrics,
        card_dir=snakemake.input.card,
        train_log_json=snakemake.params.train_log,
        tracking_uri=snakemake.params.tracking_uri,
        experiment=snakemake.params.experiment,
        out_json=snakemake.output[0],
    )
