rule prune:
    input:
        unpack(prune_inputs),
    output:
        directory(f"results/models/{{model}}/pruned/{grid.VARIANT}/{{scope}}"),
    params:
        job=prune_params,
    log:
        f"logs/prune/{{model}}/{grid.VARIANT}/{{scope}}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"
