# Inference latency once per pruned architecture (model, strategy, k; + scope for data-driven
# strategies), not per task or seed: every cell of that architecture copies the figure. A pruned
# architecture is timed beside its full model; the aggregate expresses it as that ratio times the full
# model's figure (dropbench.evaluate.latency, aggregate.in_full_models_figure).
# The job must run with nothing beside it, or its timing measures the other jobs. Locally it claims
# every core (`threads: every_core()`, i.e. --cores), so the
# scheduler starts nothing else while it runs, and times one torch thread by its CPU time, which
# processes outside Snakemake cannot inflate (dropbench.evaluate.latency). On SLURM the profile gives it a
# whole node (--exclusive).
# every_core() is in common.smk.


rule measure_latency:
    input:
        unpack(latency_inputs),
    output:
        f"results/latency/{{model}}/{grid.VARIANT}/{{scope}}.json",
    params:
        protocol=latency_params,
    log:
        f"logs/latency/{{model}}/{grid.VARIANT}/{{scope}}.log",
    conda:
        "../../envs/pytorch.yaml"
    threads: every_core()
    resources:
        gpu=config["resources"]["evaluate"]["gpu"],
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    script:
        "../scripts/models_step.py"
