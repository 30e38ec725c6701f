from dropbench.jobs import log_to
from dropbench.plots import plot_all

with log_to(snakemake.log[0]):
    plot_all(
        summary_csv=snakemake.input.summary,
        outputs=dict(snakemake.output.items()),
        style=snakemake.params.style,
        reference_models=snakemake.params.reference_models,
        train_logs=snakemake.input.train_logs,
        exports_csv=snakemake.input.exports[0] if snakemake.input.get("exports") else None,
    )
