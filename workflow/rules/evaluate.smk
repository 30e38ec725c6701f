rule evaluate:
    input:
        model=rules.finetune.output.model,
        train_log=rules.finetune.output.train_log,
        features=rules.prepare_task.output[0],
        source_model=cell_model_dir,
        tuning=tuning_choice_input,  # the learning-rate selection (config tuning), else nothing
    output:
        "results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/metrics.json",
        predictions="results/cells/{model}/{strategy}-k{k}/{task}/seed{seed}/predictions.npz",
    params:
        job=evaluate_params,
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
        "../scripts/models_step.py"
