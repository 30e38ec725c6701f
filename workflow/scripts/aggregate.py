from dropbench.aggregate import aggregate
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    outputs = dict(snakemake.output.items())
    aggregate(
        metrics_paths=snakemake.input.metrics,
        latency_paths=snakemake.input.latency,
        summary_csv=outputs["summary"],
        seeds_csv=outputs["seeds_csv"],
        missing_csv=outputs["missing_csv"],
        missing_report=outputs["missing_html"],
        model_tables={
            model: {fmt: outputs[f"{fmt}_{model}"] for fmt in ("md", "tex", "html")} for model in snakemake.params.notes
        },
        expected=snakemake.params.expected,
        failed_dir=snakemake.params.failed_dir,
        notes=snakemake.params.notes,
        order=snakemake.params.order,
        paper_score_metrics=snakemake.params.paper_score,
    )
