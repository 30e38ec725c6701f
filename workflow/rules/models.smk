rule download_model:
    input:
        download_inputs,
    output:
        directory("results/models/{model}/pretrained"),
    params:
        job=download_params,
    log:
        "logs/download_model/{model}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"
