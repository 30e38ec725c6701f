# Greedy layer search (strategy `greedy`; dropbench.greedy, issue 25 item 3). Per (model, task), step s fine-tunes
# every candidate (the layers dropped so far plus one more: the ordinary subset cells layer<i>-k1, drop_<i>_<j>-k2, ...,
# seed: the first of `seeds`), and this checkpoint keeps the one with the best score on the rows held out from the
# train split (config tuning.held_out), never on dev. Step s + 1's candidates are known only once step s's record
# exists; the cell greedy-k<k> prunes by step k's record (prune_inputs in common.smk). Candidates that are also cells
# of the grid (config `subsets`) are the same cells: trained once.


def greedy_record(model, task, step):
    """Step ``step``'s record, once the checkpoint has made it (IncompleteCheckpointException before)."""
    return checkpoints.greedy_step.get(model=model, task=task, step=step).output[0]


def greedy_step_inputs(wildcards):
    from dropbench.greedy import candidate_cells, chosen_order

    step, inputs, order = int(wildcards.step), {}, []
    if step > 1:
        inputs["previous"] = greedy_record(wildcards.model, wildcards.task, step - 1)
        order = chosen_order(inputs["previous"])
    cells = candidate_cells(wildcards.model, wildcards.task, config["seeds"][0], order, MODEL_DEPTHS[wildcards.model])
    inputs["candidates"] = [cell.metrics for cell in cells]
    return inputs


def greedy_step_params(wildcards):
    """The search's identity; which candidates the grid has too is left to the oracle report (so adding `subsets`
    later rewrites no step)."""
    return {"model": wildcards.model, "task": wildcards.task, "step": int(wildcards.step), "seed": config["seeds"][0],
            "depth": MODEL_DEPTHS[wildcards.model]}


checkpoint greedy_step:
    input:
        unpack(greedy_step_inputs),
    output:
        "results/greedy/{model}/{task}/step{step}.json",
    wildcard_constraints:
        step=r"[1-9][0-9]*",
    params:
        job=greedy_step_params,
    log:
        "logs/greedy_step/{model}/{task}/step{step}.log",
    localrule: True
    conda:
        "../../envs/pytorch.yaml"
    resources:
        mem_mb=config["resources"]["light"]["mem_mb"],
        runtime=config["resources"]["light"]["runtime"],
    script:
        "../scripts/models_step.py"
