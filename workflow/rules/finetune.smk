rule finetune:
    input:
        model=cell_model_dir,
        features=rules.prepare_task.output[0],
    output:
        model=directory("results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/finetuned"),
        train_log="results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/train_log.json",
    params:
        job=finetune_params,
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
