# Planning's integrity check (dropbench.plan.integrity.find_damaged): included after every other rule file, as
# it reads their functions (retried_cells, tuning) and is the one place that relies on Snakemake internals
# (force_when_planning).


def check_forcing_supported():
    """Fail at start-up, not silently, if this Snakemake's Workflow no longer works as force_when_planning
    assumes (tested against the pinned release by tests/test_recompute.py, which re-runs a damaged result):
    an instance with a __dict__ (not slotted) whose dataclass field dag_settings is assigned after the
    Snakefile is read, and DAG settings with a forcerun set."""
    import dataclasses

    from snakemake.exceptions import WorkflowError
    from snakemake.settings.types import DAGSettings

    fields = {field.name for field in dataclasses.fields(workflow)} if dataclasses.is_dataclass(workflow) else set()
    problems = [problem for problem, bad in (
        ("Workflow has no dataclass field dag_settings", "dag_settings" not in fields),
        ("Workflow instances have no __dict__ (slotted)", not hasattr(workflow, "__dict__")),
        ("DAGSettings has no field forcerun", "forcerun" not in {f.name for f in dataclasses.fields(DAGSettings)}),
    ) if bad]
    if problems:
        raise WorkflowError("dropbench cannot force damaged results to re-run with this Snakemake "
                            f"({'; '.join(problems)}): use the Snakemake version in requirements.txt")


def force_when_planning(paths):
    """Add ``paths`` to the --forcerun targets. Snakemake hands its DAG settings (with --forcerun) to the
    workflow only after reading the Snakefile, so the addition is made when they arrive."""

    class ForcingWorkflow(type(workflow)):
        @property
        def dag_settings(self):
            return self.__dict__["_forcing_dag_settings"]

        @dag_settings.setter
        def dag_settings(self, settings):
            if settings is not None:
                settings.forcerun = frozenset(settings.forcerun) | frozenset(paths)
            self.__dict__["_forcing_dag_settings"] = settings

    settings = workflow.dag_settings
    workflow.__class__ = ForcingWorkflow
    workflow.dag_settings = settings



# ---- integrity: damaged results of this grid (corrupt metrics, predictions that are not their cell's,
# records made under other settings than the config now asks, truncated latency records, and damaged
# intermediates of cells without valid metrics) are forced to re-run, exactly as `--forcerun <path>` would:
# planning only reads files; the job that rebuilds one replaces it. Any invocation (-n, --lint, --summary,
# ...) leaves files untouched. Main snakemake process only.


def recorded_expectations(cell):
    """What a finished cell's records must agree with (dropbench.plan.integrity.record_problems): the settings
    of its features (info.json), those its fine-tune trains with (the learning rate left out under `tuning`
    until the variant's choice exists) and, for a data-free strategy on a model of known depth, the layers
    it drops."""
    from dropbench.plan import integrity

    family = strategies.family_of(cell.strategy)[0]
    params_of = job_params.iterative_params if family == strategies.ITERATIVE else job_params.finetune_params
    training = job_params.model_training(config["training"], config["models"][cell.model])
    chosen = None
    if TUNING:
        from dropbench.train.tuning import choice_file, chosen_learning_rate

        choice = choice_file(cell.model, cell.strategy, cell.k, cell.task)
        chosen = chosen_learning_rate(choice) if integrity.json_problem(choice, ["chosen"]) is None else None
    if chosen is not None:
        training = {**training, "learning_rate": chosen}
    settings = job_params.trained_settings(params_of(training, cell.seed, config["models"][cell.model]["head"]), cell.k)
    if TUNING and chosen is None:
        del settings["learning_rate"]
    dropped = None
    if not cell.is_baseline and cell.strategy not in STRATEGIES_NEEDING_DATA:
        dropped = job_params.prune_params(cell.strategy, cell.k, MODEL_DEPTHS[cell.model], config["scoring"]).get("dropped")
    prepare = job_params.prepare_params(config["tasks"][cell.task], config["training"]["max_length"], config["subsample_seed"], TUNING)
    return {"features": {key: prepare[key] for key in ("source", "max_length", "held_out") if key in prepare},
            "training": settings, "dropped": dropped}


if workflow.is_main_process:
    from dropbench.plan import integrity

    check_forcing_supported()

    # a partial report checks the retried cells too: their results are inputs it reads as they are
    _checked = CELLS + (retried_cells() if PARTIAL_SUMMARY else [])
    _damaged = integrity.find_damaged(_checked, STRATEGIES_NEEDING_DATA, {m: c["source"] for m, c in config["models"].items()},
                                      expected=recorded_expectations, latency=latency_files_of_grid())
    if PARTIAL_SUMMARY:  # a partial report never trains: what a damaged result discredits is left out
        DISCREDITED = {p.result for p in _damaged if p.result}
        for _problem in (p for p in _damaged if p.result):  # (the intermediates of missing cells do not matter)
            print(f"WARNING: damaged result {_problem}; {_problem.result} is left out of this partial report", file=sys.stderr)
    else:
        for _problem in _damaged:
            print(f"WARNING: damaged result {_problem}; it will be recomputed", file=sys.stderr)
        if _damaged:
            force_when_planning({str(p.path) for p in _damaged})
# ---- end integrity
