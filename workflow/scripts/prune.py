from dropbench import strategies
from dropbench.device import set_threads
from dropbench.integrity import cells_below, stage_failure_record
from dropbench.jobs import log_to
from dropbench.prune import prune_step

wildcards, params = snakemake.wildcards, snakemake.params.job
task = None if wildcards.scope == "any" else wildcards.scope
cells = cells_below(snakemake.config, wildcards.model, task, wildcards.strategy, int(wildcards.k))
with log_to(snakemake.log[0]), stage_failure_record(cells, "prune"):
    set_threads(snakemake.threads)
    strategies.load_user_strategies(snakemake.config["custom_strategies"])
    strategies.register_cls_thresholds(snakemake.config["cls_thresholds"])
    prune_step(
        model=wildcards.model,
        pretrained_dir=snakemake.input.model,
        out_dir=snakemake.output[0],
        strategy=wildcards.strategy,
        k=int(wildcards.k),
        features_dir=snakemake.input.get("features"),
        scoring=params.get("scoring", snakemake.config["scoring"]),
        scope=wildcards.scope,
        expected_dropped=params.get("dropped"),
    )
