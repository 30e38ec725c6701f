from dropbench.device import set_threads
from dropbench.jobs import log_to
from dropbench.profile_scores import write_layer_profile_scores

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    write_layer_profile_scores(
        model=snakemake.wildcards.model,
        task=snakemake.wildcards.task,
        pretrained_dir=snakemake.input.model,
        features_dir=snakemake.input.features,
        scoring=snakemake.params.job["scoring"],
        out_json=snakemake.output[0],
    )
