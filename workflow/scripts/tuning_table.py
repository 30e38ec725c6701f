import pandas as pd

from dropbench.atomic import atomic_file
from dropbench.jobs import log_to
from dropbench.tuning import summary_rows

# reports/tuning.csv: per (model, strategy, k, task) and candidate learning rate, its held-out score and the choice.
with log_to(snakemake.log[0]):
    rows = summary_rows({tuple(v): path for v, path in zip(snakemake.params.variants, snakemake.input)})
    columns = ["model", "strategy", "k", "task", "learning_rate", "held_out_score", "chosen", "held_out_rows", "seed"]
    with atomic_file(snakemake.output[0]) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)
