rule finetune:
    input:
        model=cell_model_dir,
        features="results/features/{model}/{task}",
    output:
        model=directory("results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/finetuned"),
        train_log="results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/train_log.json",
    params:
        # checkpoint_minutes is operational (not a param, so changing it reruns nothing): the script reads it from config
        training={key: value for key, value in config["training"].items() if key != "checkpoint_minutes"},
        seed=lambda wildcards: int(wildcards.seed),
        state_dir="results/train_state/{model}/{strategy}-k{k}/{task}/seed{seed}",
    log:
        "logs/finetune/{model}/{strategy}-k{k}/{task}/seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{strategy}-k{k}/{task}/seed{seed}.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        gpu=config["resources"]["finetune"]["gpu"],
        mem_mb=config["resources"]["finetune"]["mem_mb"],
        runtime=config["resources"]["finetune"]["runtime"],
    script:
        "../scripts/finetune.py"
