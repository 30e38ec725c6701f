# Every rule that runs in this conda env runs dropbench.steps.models.<rule name> (src/dropbench/steps/). This file
# never changes, so an edit of a step re-runs no finished job (README "What re-runs when").
from dropbench.steps.models import run

run(snakemake)  # noqa: F821 (Snakemake's script object)
