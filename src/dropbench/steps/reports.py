"""The steps of the rules that run in envs/report.yaml (dropbench.steps): tables, figures, reports, model cards."""

from __future__ import annotations

from dropbench.steps import run_step


def run(job) -> None:
    run_step(job, STEPS)


def aggregate(job) -> None:
    from dropbench.report.aggregate import aggregate as write_summary

    write_summary(
        metrics_paths=job.input.metrics,
        latency_paths=job.input.latency,
        retry_paths=job.input.retries,
        summary_csv=job.output.summary,
        seeds_csv=job.output.seeds_csv,
        missing_csv=job.output.missing_csv,
        missing_report=job.output.missing_html,
        expected=job.params.expected,
        failed_dir=job.params.failed_dir,
        order=job.params.order,
        paper_score_metrics=job.params.paper_score,
    )


def tables(job) -> None:
    from dropbench.report.tables import tables as write_tables

    outputs = dict(job.output.items())
    write_tables(
        summary_csv=job.input.summary,
        stats_csv=job.input.stats,
        model_tables={model: {fmt: outputs[f"{fmt}_{model}"] for fmt in ("md", "tex", "html")} for model in job.params.notes},
        notes=job.params.notes,
        order=job.params.order,
        paper_score_metrics=job.params.paper_score,
        alpha=job.params.alpha,
        resamples=job.params.resamples,
        retry_diverged=job.params.retry_diverged,
    )


def plot(job) -> None:
    from dropbench.report.plots import plot_all

    plot_all(
        summary_csv=job.input.summary,
        outputs=dict(job.output.items()),
        style=job.params.style,
        reference_models=job.params.reference_models,
        train_logs=job.input.train_logs,
        exports_csv=job.input.exports[0] if job.input.get("exports") else None,
    )


def plot_layer_scores(job) -> None:
    from dropbench.report.plots import plot_layer_scores as draw

    draw(pruning_dirs=job.input.pruned, outputs=dict(job.output.items()), style=job.params.style)


def plot_intervals(job) -> None:
    from dropbench.report.interval_plots import plot_score_intervals

    plot_score_intervals(stats_csv=job.input.stats, outputs=dict(job.output.items()), style=job.params.style)


def paper_comparison(job) -> None:
    from dropbench.report.paper_comparison import PAPER_DIR
    from dropbench.report.paper_comparison import paper_comparison as compare

    compare(
        summary_csv=job.input.summary,
        paper_csv=PAPER_DIR / "published_scores.csv",  # shipped with the code; its digest is in the params
        md_path=job.output.md,
        html_path=job.output.html,
        csv_path=job.output.csv,
        sources=job.params.sources,
    )


def sensitivity(job) -> None:
    """reports/sensitivity.{md,csv}: each variant under each setting (model entries, learning-rate candidates)."""
    from dropbench.report.sensitivity import write_report

    out = job.output
    write_report(job.input.summary, job.params.settings, job.input.tuning[0] if job.input.tuning else None,
                 out.md, out.scores, out.claims)


def layer_profile(job) -> None:
    from dropbench.report.layer_profile import write_layer_profile

    write_layer_profile(
        summary_csv=job.input.summary,
        stats_csv=job.input.stats,
        score_jsons=job.input.scores,
        depths=job.params.depths,
        tasks=job.params.tasks,
        outputs=dict(job.output.items()),
        style=job.params.style,
    )


def oracle(job) -> None:
    """reports/oracle.md and its CSVs, reports/figures/oracle.*: every subset ranked, the heuristics among them,
    and the honest oracle from the cells' held-out scores (their metrics.json)."""
    from dropbench.report.oracle import write_oracle

    out = job.output
    write_oracle(job.input.summary, job.input.stats, out.md, out.subsets_csv, out.heuristics_csv,
                 out.additivity_csv, out.oracle, out.oracle_pdf, out.oracle_data, job.input.metrics, job.input.greedy)


def model_card(job) -> None:
    from dropbench.report.model_card import write_publish_folder

    write_publish_folder(
        out_dir=job.output[0],
        finetuned_dir=job.params.finetuned,
        tokenizer_dir=job.params.tokenizer,
        metrics_json=job.input.metrics,
        train_log_json=job.params.train_log,
        stats_csv=job.input.stats,
        params=job.params.job,
    )


def exports_report(job) -> None:
    from dropbench.export.exports_report import write_report

    write_report(job.input.records, job.input.latencies, job.output.csv, job.output.md)


STEPS = {step.__name__: step for step in (aggregate, tables, plot, plot_layer_scores, plot_intervals, paper_comparison,
                                          sensitivity, layer_profile, oracle, model_card, exports_report)}
