rule evaluate:
    input:
        model="results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/finetuned",
        train_log="results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/train_log.json",
        features="results/features/{model}/{task}",
        source_model=cell_model_dir,
        latency=cell_latency_file,
    output:
        "results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/metrics.json",
    params:
        cell=cell_params,
        eval_batch_size=config["evaluation"]["batch_size"],
    log:
        "logs/evaluate/{model}/{strategy}-k{k}/{task}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{strategy}-k{k}/{task}/seed{seed}.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        gpu=config["resources"]["evaluate"]["gpu"],
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    script:
        "../scripts/evaluate.py"
