# Greedy layer search (strategy `greedy`; dropbench.prune.greedy, issue 25 item 3). Per (model, task), step s fine-tunes
# every candidate (the layers dropped so far plus one more: the ordinary subset cells layer<i>-k1, drop_<i>_<j>-k2, ...,
# seed: the first of `seeds`), and this checkpoint keeps the one with the best score on the rows held out from the
# train split (config tuning.held_out), never on dev. Step s + 1's candidates are known only once step s's record
# exists; the cell greedy-k<k> prunes by step k's record (prune_inputs in common.smk). Candidates that are also cells
# of the grid (config `subsets`) are the same cells: trained once. Its input and params functions are in common.smk
# (section greedy search).


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
        **LIGHT_RESOURCES,
    script:
        "../scripts/models_step.py"
