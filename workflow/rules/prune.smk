rule prune:
    input:
        unpack(prune_inputs),
    output:
        directory("results/models/{model}/pruned/{strategy}-k{k}/{scope}"),
    params:
        job=prune_params,
    log:
        "logs/prune/{model}/{strategy}-k{k}/{scope}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"
