"""Print the params of every job each config plans, as JSON, one line per config: {rule: sorted list of each
job's params as Snakemake records them (the repr of each value)}. Several configs are planned in one process
(each its own workflow), which saves a Python and Snakemake start per config.
Usage: python plan_params.py REPO WORKDIR CONFIGFILE [CONFIGFILE ...]."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings, StorageSettings


def main(repo: Path, workdir: Path, configfile: Path) -> dict[str, list[str]]:
    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                                    config_settings=ConfigSettings(configfiles=[configfile]),
                                    storage_settings=StorageSettings(), snakefile=repo / "Snakefile", workdir=workdir)
        dag_api = workflow_api.dag(DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow.dag_settings = dag_api.dag_settings
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        params: dict[str, list[str]] = {}
        for job in workflow.dag.jobs:
            params.setdefault(job.rule.name, []).append(json.dumps(sorted(repr(v) for v in job.non_derived_params)))
    return {rule: sorted(jobs) for rule, jobs in params.items()}


if __name__ == "__main__":
    repo, workdir, *configfiles = map(Path, sys.argv[1:])
    for configfile in configfiles:
        print("PARAMS " + json.dumps(main(repo, workdir, configfile), sort_keys=True), flush=True)
