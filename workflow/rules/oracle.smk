# How far is each strategy from the best possible layers? (config `subsets`, issue 25; dropbench.report.oracle)
# The subset cells drop_<i>_<j>... are ordinary cells of the grid (common.smk, grid.cells); this rule ranks
# them and places every other strategy of the grid among them.


rule oracle:
    input:
        summary=rules.aggregate.output.summary,
        stats=rules.stats.output.stats,
        metrics=oracle_metrics,
        greedy=oracle_greedy_records,
    output:
        **oracle_outputs(),
    params:
        code=code_digest("report.oracle"),
    log:
        "logs/oracle.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"
