# Opt-in experiment tracking (config `tracking`, dropbench.export.tracking): each fine-tuned cell logged as one MLflow
# run once it is evaluated and its model card written. The output is a small marker per cell (run id, experiment,
# tracking URI); the run is found again by the cell's identity and metrics.json digest, so a re-run of this job
# (--forcerun, a change of dropbench.export.tracking's code) never logs the cell twice. Targets: common.smk
# (tracking_markers), only with `tracking` in the config.


rule track_cell:
    input:
        metrics=rules.evaluate.output[0],
        # ancient: the card must exist before the run is logged, but a card rewritten later (it follows
        # results/stats.csv, so every card is, whenever the grid changes) re-logs no cell; --forcerun track_cell
        # writes the current cards into the runs (README "Experiment tracking (MLflow)")
        card=ancient(rules.model_card.output[0]),
    output:
        f"results/tracking/mlflow/{grid.CELL_NAME}.json",
    params:
        # the loss curve: read where it still exists, never required (an intermediate, like the card's)
        train_log=f"{grid.CELL_DIR}/train_log.json",
        tracking_uri=lambda wildcards: TRACKING["mlflow"]["tracking_uri"],
        experiment=lambda wildcards: TRACKING["mlflow"]["experiment"],
        code=code_digest("export.tracking", steps="tracking"),
    log:
        f"logs/track_cell/{grid.CELL_NAME}.log",
    # it talks to the tracking server (or writes a local store): on a cluster, from the submitting node
    localrule: True
    conda:
        "../../envs/tracking.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/tracking_step.py"
