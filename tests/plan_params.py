"""Print the params of every job a config plans, as JSON: {rule: sorted list of each job's params as
Snakemake records them (the repr of each value)}. Usage: python plan_params.py REPO CONFIGFILE WORKDIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings, StorageSettings


def main(repo: Path, configfile: Path, workdir: Path) -> dict[str, list[str]]:
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
    print("PARAMS " + json.dumps(main(*map(Path, sys.argv[1:4])), sort_keys=True))
