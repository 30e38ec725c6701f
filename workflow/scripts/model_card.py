from dropbench.jobs import log_to
from dropbench.model_card import write_publish_folder

with log_to(snakemake.log[0]):
    write_publish_folder(
        out_dir=snakemake.output[0],
        finetuned_dir=snakemake.params.finetuned,
        tokenizer_dir=snakemake.params.tokenizer,
        metrics_json=snakemake.input.metrics,
        train_log_json=snakemake.params.train_log,
        stats_csv=snakemake.input.stats,
        params=snakemake.params.job,
    )
