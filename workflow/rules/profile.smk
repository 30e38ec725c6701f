# The layer-importance profile (config `layer_profile`): the single-layer cells layer<i>-k1 are ordinary cells
# of the grid (common.smk, grid.cells); these rules add the cheap per-layer scores of the unpruned model
# and the profile report (reports/layer_profile.md, its CSVs and two figures).


rule layer_profile_scores:
    input:
        model=lambda wildcards: grid.pretrained_dir(wildcards.model),
        features=lambda wildcards: grid.features_dir(wildcards.model, wildcards.task),
    output:
        "results/layer_profile/{model}/{task}/scores.json",
    params:
        job=profile_scores_params,
    log:
        "logs/layer_profile_scores/{model}/{task}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"


rule layer_profile:
    input:
        summary=rules.aggregate.output.summary,
        stats=rules.stats.output.stats,
        scores=profile_score_files,
    output:
        **profile_outputs(),
    params:
        code=code_digest("report.layer_profile"),
        depths={model: config["models"][model]["num_layers"] for model in PROFILE_MODELS},
        tasks=list(config["tasks"]),
        style=job_params.canonical(config["plots"], "plots"),
    log:
        "logs/layer_profile.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"
