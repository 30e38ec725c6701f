from dropbench.jobs import log_to
from dropbench.sensitivity import write_report

# reports/sensitivity.{md,csv}: each variant under each setting (model entries, learning-rate candidates).
with log_to(snakemake.log[0]):
    out = snakemake.output
    write_report(snakemake.input.summary, snakemake.params.settings,
                 snakemake.input.tuning[0] if snakemake.input.tuning else None, out.md, out.scores, out.claims)
