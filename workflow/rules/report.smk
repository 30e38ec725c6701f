# Reporting: aggregate the cells into tables, draw the figures; `snakemake --report reports/report.html`.
# Each rule reads only what it shows and takes only its own params, so a style change (config `plots`)
# reruns the plot rules and nothing upstream. Scripts under workflow/scripts are tracked by Snakemake's
# `code` trigger; the dropbench modules that do the work are inputs, so editing them reruns these rules too.
# Output helpers (model_table_outputs, figure_outputs, missing_label) are in common.smk.


rule aggregate:
    input:
        metrics=summary_metrics,
        latency=latency_files,
        retries=retry_lists,
    output:
        summary=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
            subcategory="Data",
            labels=lambda wildcards, output: {"table": "summary.csv (tidy, every cell and metric)", "missing": missing_label(output.summary)},
        ),
        seeds_csv="results/summary_seeds.csv",
        missing_csv="reports/missing_cells.csv",
        missing_html=report(
            "reports/missing_cells.html",
            caption="../report/missing_cells.rst",
            category="Tables",
            subcategory="Missing cells",
            labels=lambda wildcards, output: {"table": "missing cells", "missing": missing_label(output.summary)},
        ),
    params:
        code=code_digest("report.aggregate"),
        expected=expected_cells(),
        order={"models": list(config["models"]), "strategies": [*config["strategies"], *profile_strategy_order()], "tasks": list(config["tasks"])},
        failed_dir=grid.FAILED_ROOT,
        paper_score=job_params.canonical(config.get("paper_score", {})),
    log:
        "logs/aggregate.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


rule plot:
    input:
        summary=rules.aggregate.output.summary,
        train_logs=summary_train_logs,
        exports=export_table(),  # the exported models' runtimes on the Pareto figure (config export)
    output:
        **figure_outputs("score_vs_dropped", "score vs layers dropped", "Scores", lambda input: missing_label(input.summary)),
        **figure_outputs("retained_heatmap", "percent retained", "Scores", lambda input: missing_label(input.summary)),
        **figure_outputs("pareto", "score vs parameters and latency", "Scores", lambda input: missing_label(input.summary)),
        **figure_outputs("training_loss", "training loss against the trivial predictor", "Training", lambda input: missing_label(input.summary)),
    params:
        code=code_digest("report.plots"),
        style=job_params.canonical(config["plots"], "plots"),
        reference_models=[model for model, model_cfg in config["models"].items() if not grid.prunes(model_cfg)],
    log:
        "logs/plot.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


rule plot_layer_scores:
    input:
        pruned=layer_score_dirs,
    output:
        **figure_outputs("layer_scores", "per-layer scores", "Layer scores", lambda input: f"{len(input.pruned)} scorings"),
    params:
        code=code_digest("report.plots"),
        style=job_params.canonical(config["plots"], "plots"),
    log:
        "logs/plot_layer_scores.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


# ---- statistics (issue 14): intervals over seeds and paired tests on the dev predictions.
rule stats:
    input:
        summary=rules.aggregate.output.summary,
        predictions=summary_predictions,
    output:
        stats=report(
            "results/stats.csv",
            caption="../report/stats.rst",
            category="Tables",
            subcategory="Statistics",
            labels={"table": "stats.csv (intervals, paired tests)"},
        ),
        diverged="results/diverged.csv",
    params:
        code=code_digest("report.significance", steps="models"),
        statistics=job_params.canonical(config["statistics"], "statistics"),
    log:
        "logs/stats.log",
    conda:
        "../../envs/pytorch.yaml"  # dropbench.data.glue (task metrics and dev splits) reads the hub through datasets
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"


# ---- the per-model tables, with the significant differences of results/stats.csv marked (issue 14)
rule tables:
    input:
        summary=rules.aggregate.output.summary,
        stats=rules.stats.output.stats,
    output:
        **model_table_outputs(),
    params:
        code=code_digest("report.tables"),
        notes={model: model_cfg.get("note", "") for model, model_cfg in config["models"].items()},
        order={"models": list(config["models"]), "strategies": [*config["strategies"], *profile_strategy_order()], "tasks": list(config["tasks"])},
        paper_score=job_params.canonical(config.get("paper_score", {})),
        alpha=config["statistics"]["alpha"],
        resamples=config["statistics"]["resamples"],
        retry_diverged=RETRY_DIVERGED,
    log:
        "logs/tables.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


# ---- do the findings survive the protocol? (config sensitivity and/or tuning; dropbench.report.sensitivity)
rule sensitivity:
    input:
        summary=rules.aggregate.output.summary,
        tuning=sensitivity_tuning_input(),
    output:
        md="reports/sensitivity.md",
        scores="reports/sensitivity_scores.csv",
        claims="reports/sensitivity_claims.csv",
    params:
        settings=config["sensitivity"],
        code=code_digest("report.sensitivity"),
    log:
        "logs/sensitivity.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


# ---- the paper beside ours (issue 14): published numbers from resources/paper/.
rule paper_comparison:
    input:
        summary=rules.aggregate.output.summary,
    output:
        md="reports/paper_comparison.md",
        csv="reports/paper_comparison.csv",
        html=report(
            "reports/paper_comparison.html",
            caption="../report/paper_comparison.rst",
            category="Tables",
            subcategory="Paper comparison",
            labels={"table": "paper comparison"},
        ),
    params:
        code=code_digest("report.paper_comparison", files=("resources/paper/published_scores.csv",)),
        # which of our models are the paper's checkpoints (by name, depth and hub id)
        sources={model: {key: config["models"][model]["source"][key] for key in ("kind", "repo_id")
                         if key in config["models"][model]["source"]}
                 for model in sorted(config["models"])},  # (sorted: the models' order is no part of it)
    log:
        "logs/paper_comparison.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


# ---- intervals and significance drawn (issue 14)
rule plot_intervals:
    input:
        stats=rules.stats.output.stats,
        summary=rules.aggregate.output.summary,
    output:
        **figure_outputs("score_intervals", "score with 95% intervals", "Scores", lambda input: missing_label(input.summary)),
    params:
        code=code_digest("report.interval_plots"),
        style=job_params.canonical(config["plots"], "plots"),
    log:
        "logs/plot_intervals.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"


# Tables and figures only, e.g. from a partial grid:
#   snakemake --cores 1 --config partial_summary=true -- report_only
rule report_only:
    input:
        rules.aggregate.output,
        rules.tables.output,
        rules.plot.output,
        rules.plot_layer_scores.output,
        rules.stats.output,
        rules.paper_comparison.output,
        rules.plot_intervals.output,
    localrule: True
