"""The tiny workflow through profiles/slurm on a real single-node SLURM cluster started for the test.

Installs slurm-wlm and munge with apt where missing (skips only where apt cannot be used), starts
munged, slurmctld and slurmd (tests/slurm_cluster.py), runs the workflow with
`--profile profiles/slurm`, checks that every job went through sbatch into the partition the
profile names, and that the cells match a local run's (conftest's base_run). The cluster is stopped and its files
removed afterwards, also when a test fails. Select with `pytest -k slurm`.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import slurm_cluster
from conftest import fresh_copy_of_base_run
from workflow_runner import REPO, SNAKEMAKE, planned_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Test-only settings on top of the profile: this cluster has no accounting database (so squeue, not
# sacct, reports job states, and there is no account), and the first status check comes early.
TEST_ONLY = [
    "--slurm-status-command", "squeue", "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs",
]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/")
RUN_LIMIT_S = 1500  # turns a stuck queue into a failure; not a performance bound


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def skip_unless_slurm_can_run() -> None:
    reason = slurm_cluster.install_reason_to_skip() or slurm_cluster.clash_reason()
    if reason:
        pytest.skip(reason)


def test_slurm_cluster_stops_and_cleans_up_even_when_the_body_fails():
    # Runs before the module's cluster starts (file order): two test clusters cannot share the node.
    skip_unless_slurm_can_run()
    root = Path(tempfile.mkdtemp(prefix="dropbench-slurm-"))
    pids = []
    with pytest.raises(RuntimeError, match="body failed"):
        with slurm_cluster.running(root) as cluster:
            assert "idle" in cluster.run("sinfo", "--noheader", "--format=%T")
            for pid_file in ("slurmctld.pid", "slurmd.pid", "munge/munged.pid"):
                pids.append(int((root / pid_file).read_text()))
            raise RuntimeError("body failed")
    assert len(pids) == 3 and not any(alive(pid) for pid in pids)
    assert not root.exists()
    assert not slurm_cluster.NODE_CONF_LINK.is_symlink()


@pytest.fixture(scope="module")
def slurm():
    skip_unless_slurm_can_run()
    with slurm_cluster.running(Path(tempfile.mkdtemp(prefix="dropbench-slurm-"))) as cluster:
        yield cluster


def slurm_workdir(base: Path, base_run: Path) -> Path:
    """The SLURM run's directory: the config and inputs of conftest's base_run (one task, the baseline and top-k1),
    no results, to compare with the finished base_run."""
    return fresh_copy_of_base_run(base_run, base / "slurm")


def start_snakemake(workdir: Path, *args: str, env: dict) -> subprocess.Popen:
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), *args]
    env = {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(workdir / "snakemake.out", "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir)


def finish(run: subprocess.Popen, workdir: Path) -> str:
    try:
        run.wait(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        run.terminate()
        run.wait()
    output = (workdir / "snakemake.out").read_text()
    assert run.returncode == 0, f"snakemake in {workdir} failed ({run.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory, base_run):
    on_slurm = slurm_workdir(tmp_path_factory.mktemp("slurm_e2e"), base_run)
    plan = planned_jobs(on_slurm, "--workflow-profile", "none")
    slurm_run = start_snakemake(on_slurm, "--profile", str(REPO / "profiles" / "slurm"),
                                "--workflow-profile", "none", *TEST_ONLY, env=slurm.env)
    slurm_output = finish(slurm_run, on_slurm)
    return {"slurm": on_slurm, "local": base_run, "output": slurm_output, "plan": plan, "cluster": slurm}


def submitted_jobs(output: str) -> dict[str, str]:
    """SLURM job id -> rule, from the main log's submission lines."""
    return {job_id: rule for job_id, rule in SUBMITTED.findall(output)}


# Run on the submitting node: the download needs the internet (compute nodes often lack it), the
# report rules are seconds of work each (localrules in workflow/rules/common.smk).
LOCAL_RULES = {"all", "download_model", "aggregate", "tables", "find_diverged", "plot", "plot_layer_scores", "paper_comparison", "plot_intervals"}


def test_slurm_runs_every_job_through_sbatch_into_the_profiles_partition(runs):
    jobs = submitted_jobs(runs["output"])
    planned = {rule: n for rule, n in runs["plan"].items() if rule not in LOCAL_RULES}
    assert Counter(jobs.values()) == Counter(planned), "every other planned job is submitted once"
    assert {"download_model", "aggregate", "plot"} <= set(runs["plan"])
    for rule in LOCAL_RULES & set(runs["plan"]):
        assert rule not in jobs.values() and f"localrule {rule}:" in runs["output"], rule
    finished = runs["cluster"].finished_jobs()
    for job_id, rule in jobs.items():
        record = finished[job_id]  # the SLURM controller ran it to completion
        assert record["JobState"] == "COMPLETED", (rule, record)
        assert record["Partition"] == ("gpu" if rule == "finetune" else "cpu"), (rule, record)
        assert list((runs["slurm"] / ".snakemake" / "slurm_logs").glob(f"rule_{rule}/**/{job_id}.log")), (rule, job_id)


def test_slurm_finetune_jobs_get_one_gpu_and_the_profiles_cpus(runs):
    finetunes = [job_id for job_id, rule in submitted_jobs(runs["output"]).items() if rule == "finetune"]
    assert len(finetunes) == 2
    for job_id in finetunes:
        details = runs["cluster"].run("scontrol", "--oneliner", "show", "job", job_id)
        assert "TresPerJob=gres:gpu:1" in details, details
        assert runs["cluster"].finished_jobs()[job_id]["ProcCnt"] == "4"  # set-threads: finetune: 4


def test_slurm_results_match_a_local_run(runs):
    def cells(workdir: Path) -> set[str]:
        return {str(path.relative_to(workdir)) for path in workdir.glob("results/cells/**/metrics.json")}

    assert cells(runs["slurm"]) == cells(runs["local"])
    assert len(cells(runs["slurm"])) == 2  # the baseline and top-k1 on sst2
    key = ["model", "strategy", "k", "task", "seed"]
    summaries = [pd.read_csv(runs[side] / "results" / "summary.csv") for side in ("slurm", "local")]
    on_slurm, local = (set(map(tuple, s[s["metric"] == "task_score"][key].values.tolist())) for s in summaries)
    assert on_slurm == local and len(on_slurm) == 2
