from dropbench.device import set_threads
from dropbench.gpu_slots import gpu_slot
from dropbench.job_params import train_settings
from dropbench.jobs import log_to
from dropbench.train import TrainConfig
from dropbench.tuning import tune

# One selection fine-tune (config tuning, dropbench.tuning): the weights are not kept.
params = snakemake.params.job
with log_to(snakemake.log[0]), gpu_slot():
    set_threads(snakemake.threads)
    tune(
        model_dir=snakemake.input.model,
        features_dir=snakemake.input.features,
        task=snakemake.wildcards.task,
        cfg=TrainConfig.from_dict(train_settings(snakemake.config["training"], params)),
        state_dir=snakemake.params.state_dir,
        out_path=snakemake.output[0],
        eval_batch_size=snakemake.config["evaluation"]["batch_size"],
    )
