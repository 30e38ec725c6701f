from dropbench.cell_record import write_cell_metrics
from dropbench.jobs import log_to, set_threads

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    write_cell_metrics(
        cell=snakemake.params.cell,
        finetuned_dir=snakemake.input.model,
        source_model_dir=snakemake.input.source_model,
        features_dir=snakemake.input.features,
        train_log=snakemake.input.train_log,
        evaluation=snakemake.params.evaluation,
        out_path=snakemake.output[0],
    )
