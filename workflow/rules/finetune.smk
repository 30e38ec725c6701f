rule finetune:
    input:
        model=finetune_model_dir,
        features=rules.prepare_task.output[0],
        tuning=tuning_choice_input,  # the chosen learning rate (config tuning), else nothing
    output:
        model=directory(f"{grid.CELL_DIR}/finetuned"),
        train_log=f"{grid.CELL_DIR}/train_log.json",
    params:
        job=finetune_params,
        state_dir=f"results/train_state/{grid.CELL_NAME}",
    log:
        f"logs/finetune/{grid.CELL_NAME}.log",
    benchmark:
        f"results/benchmarks/finetune/{grid.CELL_NAME}.tsv"
    conda:
        "../../envs/pytorch.yaml"
    threads: config["resources"]["finetune"]["threads"]
    resources:
        gpu=config["resources"]["finetune"]["gpu"],
        mem_mb=config["resources"]["finetune"]["mem_mb"],
        runtime=config["resources"]["finetune"]["runtime"],
    script:
        "../scripts/models_step.py"


# Strategy families (dropbench.train.families), as `finetune` with other inputs and outputs (the same env, threads,
# resources and script: the step is dropbench.steps.models.<rule name>). task_specific_<base>: this first stage
# fine-tunes the full model with the layers <base> drops frozen, then removes them; `finetune` above trains the
# result again. Its own output, so more seeds or a re-run of the second stage reuse it.
use rule finetune as frozen_finetune with:
    input:
        model=pretrained_model_dir,
        pruned=cell_model_dir,  # pruning.json: the layers to freeze and drop
        features=rules.prepare_task.output[0],
    output:
        model=directory(f"{grid.CELL_DIR}/frozen_finetune"),
        train_log=f"{grid.CELL_DIR}/frozen_train_log.json",
    wildcard_constraints:
        strategy=r"task_specific_[a-z0-9_]+",
    params:
        job=finetune_params,
        state_dir=f"results/train_state/{grid.CELL_NAME}-frozen",
    log:
        f"logs/frozen_finetune/{grid.CELL_NAME}.log",
    benchmark:
        f"results/benchmarks/frozen_finetune/{grid.CELL_NAME}.tsv"


# iterative_<base>: the full model, one layer dropped every two epochs in <base>'s order, then the
# configured epochs; writes the cell's fine-tuned model in place of `finetune`.
use rule finetune as iterative_finetune with:
    input:
        model=pretrained_model_dir,
        pruned=cell_model_dir,  # pruning.json: the order to drop the layers in
        features=rules.prepare_task.output[0],
    wildcard_constraints:
        strategy=r"iterative_[a-z0-9_]+",
    params:
        job=iterative_params,
        state_dir=f"results/train_state/{grid.CELL_NAME}",
    log:
        f"logs/iterative_finetune/{grid.CELL_NAME}.log",


ruleorder: iterative_finetune > finetune
