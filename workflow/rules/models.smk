rule download_model:
    output:
        directory("results/models/{model}/pretrained"),
    params:
        source=lambda wildcards: config["models"][wildcards.model]["source"],
    log:
        "logs/download_model/{model}.log",
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=config["resources"]["light"]["mem_mb"],
        runtime=config["resources"]["light"]["runtime"],
    script:
        "../scripts/download_model.py"
