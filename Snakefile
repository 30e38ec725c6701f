# dropbench: drop layers of pre-trained encoders, fine-tune on GLUE, report what survives.
# Stages live in workflow/rules/*.smk; config checks and input functions in common.smk.
from snakemake.utils import min_version

min_version("9.0")


# The embedded default; a --configfile given on the command line replaces it instead of merging
# into it, so `--configfile config/paper.yaml` runs exactly the paper grid.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Rules read their upstream outputs as rules.<name>.output, so a stage is included after those it reads.
include: "workflow/rules/models.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/tuning.smk"
include: "workflow/rules/greedy.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/latency.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/retry.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/oracle.smk"
include: "workflow/rules/card.smk"
include: "workflow/rules/tracking.smk"


if config.get("export"):

    include: "workflow/rules/export.smk"


# last: the integrity check of the results reads the functions of every rule file above
include: "workflow/rules/integrity.smk"


# Every cell's metrics and model card (card.smk) and, with `tracking`, its MLflow run (tracking.smk), every
# table and figure (report_only, in report.smk; the layer profile's, profile.smk).
rule all:
    input:
        metrics_files(),
        card_folders(),
        tracking_markers(),
        rules.report_only.input,
        profile_outputs().values(),
        tuning_outputs(),
        sensitivity_outputs(),
        oracle_targets(),
        export_targets(),
    default_target: True
