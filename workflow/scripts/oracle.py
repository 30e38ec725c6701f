from dropbench.jobs import log_to
from dropbench.oracle import write_oracle

# reports/oracle.md and its CSVs, reports/figures/oracle.{png,pdf,csv}: every subset ranked, the heuristics among
# them, and the honest oracle from the cells' held-out scores (their metrics.json).
with log_to(snakemake.log[0]):
    out = snakemake.output
    write_oracle(snakemake.input.summary, snakemake.input.stats, out.md, out.subsets_csv, out.heuristics_csv,
                 out.additivity_csv, out.oracle, out.oracle_pdf, out.oracle_data, snakemake.input.metrics)
