from dropbench.device import set_threads
from dropbench.gpu_slots import gpu_slot
from dropbench.integrity import cell_from_wildcards, failure_record
from dropbench.job_params import train_settings
from dropbench.jobs import log_to
from dropbench.train import TrainConfig, finetune

params = snakemake.params.job
with log_to(snakemake.log[0]), failure_record(cell_from_wildcards(snakemake.wildcards), "finetune"), gpu_slot():
    set_threads(snakemake.threads)
    finetune(
        model_dir=snakemake.input.model,
        features_dir=snakemake.input.features,
        task=snakemake.wildcards.task,
        out_dir=snakemake.output.model,
        state_dir=snakemake.params.state_dir,
        cfg=TrainConfig.from_dict(train_settings(snakemake.config["training"], params)),
        train_log=snakemake.output.train_log,
    )
