# Re-running diverged fine-tunes (config retry_diverged: N; dropbench.report.retries). Attempt a lists the runs
# of attempt a-1 (the grid's own for a = 1) that diverged; each retry is an ordinary cell at seed
# first seed + 1000 x a, fine-tuned and evaluated by the usual rules. A checkpoint, because which runs
# diverge is known only once they ran; with retry_diverged: 0 nothing here is planned.
# Its input functions are in common.smk (section retries), as every rule's are.


# A partial report (partial_summary=true) never trains: without the checkpoint, the retry lists that exist
# are plain inputs, read as they are; with it, a missing cell's predictions (an input of every attempt)
# would be fine-tuned to bring the lists up to date.
if not PARTIAL_SUMMARY:

    checkpoint find_diverged:
        input:
            unpack(find_diverged_inputs),
        output:
            "results/retries/attempt{attempt}.csv",
        params:
            code=code_digest("report.retries", steps="models"),
        log:
            "logs/find_diverged/attempt{attempt}.log",
        wildcard_constraints:
            attempt=r"[1-9]\d*",
        localrule: True
        conda:
            "../../envs/pytorch.yaml"  # dropbench.data.glue (task metrics) as in rule stats
        resources:
            **LIGHT_RESOURCES,
        script:
            "../scripts/models_step.py"
