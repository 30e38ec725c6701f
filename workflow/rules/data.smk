rule prepare_task:
    input:
        model="results/models/{model}/pretrained",
    output:
        directory("results/features/{model}/{task}"),
    params:
        source=task_source,
        max_length=config["training"]["max_length"],
        max_train_examples=lambda wildcards: config["tasks"][wildcards.task].get("max_train_examples"),
        subsample_seed=config["subsample_seed"],
    log:
        "logs/prepare_task/{model}/{task}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=config["resources"]["light"]["mem_mb"],
        runtime=config["resources"]["light"]["runtime"],
    script:
        "../scripts/prepare_task.py"
