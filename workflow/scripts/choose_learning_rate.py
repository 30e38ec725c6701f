from dropbench.jobs import log_to
from dropbench.tuning import write_choice

# The variant's learning rate (config tuning): the best held-out task score, ties to the smaller one.
with log_to(snakemake.log[0]):
    write_choice(list(snakemake.input), snakemake.output[0])
