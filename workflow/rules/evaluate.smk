rule evaluate:
    input:
        model=rules.finetune.output.model,
        train_log=rules.finetune.output.train_log,
        features=rules.prepare_task.output[0],
        source_model=cell_model_dir,
        tuning=tuning_choice_input,  # the learning-rate selection (config tuning), else nothing
    output:
        f"{grid.CELL_DIR}/metrics.json",
        predictions=f"{grid.CELL_DIR}/predictions.npz",
    params:
        job=evaluate_params,
    log:
        f"logs/evaluate/{grid.CELL_NAME}.log",
    benchmark:
        f"results/benchmarks/evaluate/{grid.CELL_NAME}.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        gpu=config["resources"]["evaluate"]["gpu"],
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    script:
        "../scripts/models_step.py"
