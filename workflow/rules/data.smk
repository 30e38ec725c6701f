rule prepare_task:
    input:
        model=rules.download_model.output[0],
        data=prepare_inputs,
    output:
        directory("results/features/{model}/{task}"),
    params:
        job=prepare_params,
    log:
        "logs/prepare_task/{model}/{task}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"
