from dropbench.aggregate import tables
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    outputs = dict(snakemake.output.items())
    tables(
        summary_csv=snakemake.input.summary,
        stats_csv=snakemake.input.stats,
        model_tables={
            model: {fmt: outputs[f"{fmt}_{model}"] for fmt in ("md", "tex", "html")} for model in snakemake.params.notes
        },
        notes=snakemake.params.notes,
        order=snakemake.params.order,
        paper_score_metrics=snakemake.params.paper_score,
        alpha=snakemake.params.alpha,
        resamples=snakemake.params.resamples,
        retry_diverged=snakemake.params.retry_diverged,
    )
