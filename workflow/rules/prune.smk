rule prune:
    input:
        unpack(prune_inputs),
    output:
        directory("results/models/{model}/pruned/{strategy}-k{k}/{scope}"),
    params:
        scoring=config["scoring"],
        custom_strategies=config["custom_strategies"],
    log:
        "logs/prune/{model}/{strategy}-k{k}/{scope}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=config["resources"]["light"]["mem_mb"],
        runtime=config["resources"]["light"]["runtime"],
    script:
        "../scripts/prune.py"
