# Re-running diverged fine-tunes (config retry_diverged: N; dropbench.retries). Attempt a lists the runs
# of attempt a-1 (the grid's own for a = 1) that diverged; each retry is an ordinary cell at seed
# first seed + 1000 x a, fine-tuned and evaluated by the usual rules. A checkpoint, because which runs
# diverge is known only once they ran; with retry_diverged: 0 nothing here is planned.
# Its input functions live here, beside the checkpoint they read (common.smk's summary inputs call them).


def retry_lists(wildcards=None, attempts=None):
    """The retry lists of attempts 1..attempts (default: all retry_diverged of them)."""
    attempts = RETRY_DIVERGED if attempts is None else attempts
    if PARTIAL_SUMMARY:  # aggregate what exists; never start fine-tunes (no checkpoint in a partial report)
        return [path for a in range(1, attempts + 1) if os.path.exists(path := f"results/retries/attempt{a}.csv")]
    return [checkpoints.find_diverged.get(attempt=a).output[0] for a in range(1, attempts + 1)]


def retried_cells(attempts=None):
    """The cells of the retries of attempts 1..attempts."""
    attempts = RETRY_DIVERGED if attempts is None else attempts
    if attempts == 0:  # no retries: spare every planning run dropbench.retries' import of scipy (~1 s)
        return []
    from dropbench.retries import read_retries, retry_cells

    return retry_cells(read_retries(retry_lists(attempts=attempts)))


def find_diverged_inputs(wildcards):
    earlier = int(wildcards.attempt) - 1
    cells = CELLS + retried_cells(earlier)
    return {"predictions": [f"{cell.dir}/predictions.npz" for cell in cells], "earlier": retry_lists(attempts=earlier)}


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
            code=code_digest("retries", steps="models"),
        log:
            "logs/find_diverged/attempt{attempt}.log",
        wildcard_constraints:
            attempt=r"[1-9]\d*",
        localrule: True
        conda:
            "../../envs/pytorch.yaml"  # dropbench.glue (task metrics) as in rule stats
        resources:
            mem_mb=config["resources"]["light"]["mem_mb"],
            runtime=config["resources"]["light"]["runtime"],
        script:
            "../scripts/models_step.py"
