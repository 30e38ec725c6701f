"""A throwaway single-node SLURM cluster on this machine, for tests and trying the profile by hand.

munged, slurmctld and slurmd run as root with every file (config, key, state, spool, logs) in one
directory and on free ports, so nothing in /etc is touched. There is no accounting database; finished jobs are kept in `jobcomp.txt`. The node is declared
with more CPUs and memory than the machine may have (`config_overrides`: nothing is enforced) and
two fake GPUs, so the SLURM profile's real requests fit and `--gpus` is exercised without a GPU.

Inside a job the executor plugin calls `srun` with every SLURM_* variable except the job's identity
removed, SLURM_CONF included; srun then looks for /etc/slurm/slurm.conf and, failing that, for
/run/slurm/conf/slurm.conf (where configless slurmd keeps its copy). So /run/slurm/conf is linked
to the cluster's directory while it runs: one test cluster at a time, on a machine without its
own SLURM config (clash_reason() says when that is not so).

By hand:  python tests/slurm_cluster.py up /tmp/slurm   (prints the SLURM_CONF to export)
          python tests/slurm_cluster.py down /tmp/slurm
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge"]
DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol"]
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
NODE_CONF_LINK = Path("/run/slurm/conf")


@dataclass(frozen=True)
class Cluster:
    root: Path
    env: dict  # the environment SLURM clients need (SLURM_CONF)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def run(self, *command: str, check: bool = True) -> str:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check).stdout

    def finished_jobs(self) -> dict[str, dict[str, str]]:
        """Job id -> the fields jobcomp/filetxt wrote for it (JobState, Partition, ...)."""
        path = self.root / "jobcomp.txt"
        jobs = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            jobs[fields["JobId"]] = fields
        return jobs


def missing_tools() -> list[str]:
    return [tool for tool in DAEMONS if shutil.which(tool, path=SBIN_PATH) is None]


def install_reason_to_skip() -> str | None:
    """Install slurm-wlm and munge with apt where missing; a reason to skip where apt cannot be used."""
    if not missing_tools():
        return None
    apt = shutil.which("apt-get", path=SBIN_PATH)
    if apt is None:
        return f"SLURM is not installed ({', '.join(missing_tools())} missing) and apt-get is not available"
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run([apt, "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, text=True, check=True)
    still_missing = missing_tools()
    if still_missing:
        raise RuntimeError(f"apt-get installed {PACKAGES} but {still_missing} are still missing")
    return None


def clash_reason() -> str | None:
    """Why a test cluster cannot run here now, or None."""
    if SYSTEM_CONF.exists():
        return f"this machine has its own SLURM config ({SYSTEM_CONF}), which srun inside test jobs would read"
    if NODE_CONF_LINK.is_symlink() and NODE_CONF_LINK.exists():
        return f"another test cluster is running ({NODE_CONF_LINK} -> {os.readlink(NODE_CONF_LINK)})"
    if NODE_CONF_LINK.exists() and not NODE_CONF_LINK.is_symlink():
        return f"{NODE_CONF_LINK} belongs to a configless slurmd on this machine"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(root: Path, cpus: int, memory_mb: int, gpus: int) -> None:
    node = socket.gethostname().split(".")[0]
    devices = []
    for index in range(gpus):
        device = root / f"fakegpu{index}"
        try:  # a character device lets slurmd map the GPU to CUDA_VISIBLE_DEVICES; a file still counts
            os.mknod(device, 0o600 | 0o020000, os.makedev(1, 3))
        except OSError:
            device.touch()
        devices.append(device)
    (root / "gres.conf").write_text(
        "".join(f"NodeName={node} Name=gpu File={device}\n" for device in devices)
    )
    (root / "slurm.conf").write_text(f"""\
ClusterName=dropbench-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / 'munge' / 'munge.socket'}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root / 'jobcomp.txt'}
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={memory_mb} Gres=gpu:{gpus} State=UNKNOWN
PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={node} MaxTime=INFINITE State=UP
""")


def start(root: Path, cpus: int = 8, memory_mb: int = 32000, gpus: int = 2, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd under ``root`` and wait until the node takes jobs."""
    reason = clash_reason()
    if reason:
        raise RuntimeError(reason)
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    write_config(root, cpus, memory_mb, gpus)
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "PATH": SBIN_PATH}
    cluster = Cluster(root, env)
    munge = root / "munge"
    subprocess.run(
        ["munged", "--force", f"--key-file={key}", f"--socket={munge / 'munge.socket'}",
         f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
         f"--log-file={root / 'log' / 'munged.log'}"],
        env=env, check=True, capture_output=True,
    )
    NODE_CONF_LINK.parent.mkdir(parents=True, exist_ok=True)
    NODE_CONF_LINK.unlink(missing_ok=True)  # a stale link: clash_reason() let it through
    NODE_CONF_LINK.symlink_to(root)
    subprocess.run(["slurmctld", "-f", str(cluster.conf)], env=env, check=True, capture_output=True)
    subprocess.run(["slurmd", "-f", str(cluster.conf)], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = cluster.run("sinfo", "--noheader", "--format=%T", check=False).split()
        if states and all(state == "idle" for state in states):
            return cluster
        time.sleep(0.5)
    logs = "\n".join(path.read_text()[-2000:] for path in sorted((root / "log").glob("*.log")))
    raise RuntimeError(f"the test SLURM node did not come up within {timeout}s; logs:\n{logs}")


def stop(root: Path) -> None:
    """Cancel jobs, stop the daemons started from ``root`` (by their pid files) and delete ``root``."""
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "PATH": SBIN_PATH}
    if (root / "slurm.conf").exists():
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _queued(env):
            time.sleep(0.5)
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
    for daemon, pid_file in (("slurmd", root / "slurmd.pid"), ("slurmctld", root / "slurmctld.pid"),
                             ("munged", root / "munge" / "munged.pid")):
        _terminate(daemon, pid_file)
    if NODE_CONF_LINK.is_symlink() and Path(os.readlink(NODE_CONF_LINK)) == root:
        NODE_CONF_LINK.unlink()
    shutil.rmtree(root, ignore_errors=True)


def _queued(env: dict) -> bool:
    result = subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING"],
                            env=env, capture_output=True, text=True)
    return result.returncode == 0 and bool(result.stdout.strip())


def _terminate(daemon: str, pid_file: Path, grace: float = 10) -> None:
    """Stop the daemon named in ``pid_file``, making sure the pid still is that daemon."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(pid_file.read_text().strip())
        if daemon not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return
        deadline = time.monotonic() + grace
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(root: Path, **sizes) -> Iterator[Cluster]:
    """A started cluster that is stopped and removed afterwards, also when the body or the start fails."""
    try:
        yield start(root, **sizes)
    finally:
        stop(root)


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2]).resolve()
    if action == "up":
        reason = install_reason_to_skip()
        if reason:
            sys.exit(reason)
        print(f"export SLURM_CONF={start(where).conf}")
    elif action == "down":
        stop(where)
    else:
        sys.exit(f"usage: {sys.argv[0]} up|down DIR")
