from dropbench.evaluation import write_cell_metrics
from dropbench.device import set_threads
from dropbench.gpu_slots import gpu_slot
from dropbench.integrity import cell_from_wildcards, failure_record
from dropbench.jobs import log_to

# evaluation.batch_size and the latency protocol do not change the scores: read from the config, not params.
with log_to(snakemake.log[0]), failure_record(cell_from_wildcards(snakemake.wildcards), "evaluate"), gpu_slot():
    set_threads(snakemake.threads)
    write_cell_metrics(
        cell=snakemake.params.job["cell"],
        finetuned_dir=snakemake.input.model,
        source_model_dir=snakemake.input.source_model,
        features_dir=snakemake.input.features,
        train_log=snakemake.input.train_log,
        eval_batch_size=snakemake.config["evaluation"]["batch_size"],
        out_path=snakemake.output[0],
        predictions_path=snakemake.output.predictions,
        tuning_choice=snakemake.input.tuning[0] if snakemake.input.get("tuning") else None,
    )
