from dropbench.aggregate import aggregate
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    aggregate(
        metrics_paths=snakemake.input.metrics,
        latency_paths=snakemake.input.latency,
        retry_paths=snakemake.input.retries,
        summary_csv=snakemake.output.summary,
        seeds_csv=snakemake.output.seeds_csv,
        missing_csv=snakemake.output.missing_csv,
        missing_report=snakemake.output.missing_html,
        expected=snakemake.params.expected,
        failed_dir=snakemake.params.failed_dir,
        order=snakemake.params.order,
        paper_score_metrics=snakemake.params.paper_score,
    )
