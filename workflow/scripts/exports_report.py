from dropbench.exports_report import write_report
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    write_report(snakemake.input.records, snakemake.input.latencies, snakemake.output.csv, snakemake.output.md)
