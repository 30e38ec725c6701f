rule aggregate:
    input:
        metrics=metrics_files(),
    output:
        summary="results/summary.csv",
        wide_md="reports/tables/summary_wide.md",
    log:
        "logs/aggregate.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=config["resources"]["light"]["mem_mb"],
        runtime=config["resources"]["light"]["runtime"],
    script:
        "../scripts/aggregate.py"


rule plot:
    input:
        summary="results/summary.csv",
    output:
        score_vs_dropped=report(
            "reports/figures/score_vs_dropped.png",
            caption="../report/score_vs_dropped.rst",
            category="Figures",
        ),
    log:
        "logs/plot.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=config["resources"]["light"]["mem_mb"],
        runtime=config["resources"]["light"]["runtime"],
    script:
        "../scripts/plot.py"
