# Learning-rate selection (config `tuning`; dropbench.train.tuning). Per (model, strategy, k, task) one selection
# fine-tune per candidate learning rate, with seed tuning.seed, on the train split less the held-out rows
# (prepare_task's split held_out), scored on those rows; the checkpoint picks one, which every seed of the
# variant is fine-tuned at (finetune_params in common.smk). A single candidate is no selection: no selection
# fine-tune, and the checkpoint records its rate as fixed (params choice). Without `tuning` nothing here is planned.

# Its input and params functions are in common.smk (section tuning).


rule tune_learning_rate:
    input:
        model=cell_model_dir,
        features=rules.prepare_task.output[0],
    output:
        f"results/tuning/{{model}}/{grid.VARIANT}/{{task}}/lr{{lr}}.json",
    wildcard_constraints:
        lr=r"[0-9][0-9.e\-]*",
    params:
        job=tune_params,
        state_dir=f"results/train_state/tuning/{{model}}/{grid.VARIANT}/{{task}}/lr{{lr}}",
    log:
        f"logs/tune_learning_rate/{{model}}/{grid.VARIANT}/{{task}}/lr{{lr}}.log",
    benchmark:
        f"results/benchmarks/tune_learning_rate/{{model}}/{grid.VARIANT}/{{task}}/lr{{lr}}.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        gpu=config["resources"]["finetune"]["gpu"],
        mem_mb=config["resources"]["finetune"]["mem_mb"],
        runtime=config["resources"]["finetune"]["runtime"],
    script:
        "../scripts/models_step.py"


checkpoint choose_learning_rate:
    input:
        tuning_candidates,
    output:
        f"results/tuning/{{model}}/{grid.VARIANT}/{{task}}/choice.json",
    params:
        choice=job_params.choice_params(TUNING) if TUNING else None,
    log:
        f"logs/choose_learning_rate/{{model}}/{grid.VARIANT}/{{task}}.log",
    localrule: True
    conda:
        "../../envs/pytorch.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"


rule tuning_table:
    input:
        tuning_choice_files,
    output:
        "reports/tuning.csv",
    params:
        variants=tuning_variants,
        code=code_digest("train.tuning", steps="models"),
    log:
        "logs/tuning_table.log",
    localrule: True
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../scripts/models_step.py"
