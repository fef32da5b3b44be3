"""A throw-away one-node SLURM cluster (munge, slurmctld, slurmd) in a temporary folder, for tests.

Debian's slurm-wlm daemons run as root on loopback with their own slurm.conf: a `cpu` and a `gpu`
partition on the same node, and one fake GPU (gres.conf `File=/dev/null`, no autodetection), so
the SLURM executor plugin's `--gpus=1` requests are scheduled like on a real GPU node. No slurmdbd:
job status comes from `squeue` (accounting storage is off, `sacct` cannot answer). Daemons are
stopped by their PIDs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "sacct", "scancel")


def missing_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return (
            f"SLURM/munge binaries missing ({', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the test SLURM cluster's daemons must run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Cluster:
    """One node (`cpus` CPUs, `mem_mb` MB, one GPU) in partitions `cpu` (default) and `gpu`."""

    def __init__(self, root: Path, cpus: int, mem_mb: int = 64000):
        self.root = root
        self.cpus = cpus
        self.mem_mb = mem_mb
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        # The jobstep plugin strips SLURM_* (SLURM_CONF too) before its `srun`: an `srun` first on
        # PATH that sets it again keeps this cluster's config out of /etc/slurm.
        self.bin = root / "bin"
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r, 0o755)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        sock = r / "munge" / "munge.socket"
        host = self.host
        self.conf.write_text(
            f"""ClusterName=expotest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""
        )
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun") or "/usr/bin/srun"} "$@"\n')
        srun.chmod(0o755)
        (r / "gres.conf").write_text(f"AutoDetect=off\nNodeName={host} Name=gpu File=/dev/null\n")

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        m = self.root / "munge"
        self._start(
            "munged",
            [
                _binary("munged"), "-F", "--force", f"--socket={m}/munge.socket", f"--key-file={m}/munge.key",
                f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed",
            ],
        )  # fmt: skip
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged socket")
        self._start("slurmctld", [_binary("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), timeout, "slurmctld")
        self._start("slurmd", [_binary("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        self._wait(lambda: self._ok(["sinfo", "-h", "-N", "-o", "%t"], "idle"), timeout, "slurmd (node idle)")

    def _ok(self, argv: list[str], needle: str) -> bool:
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        return needle in proc.stdout

    def _wait(self, cond, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.logs()}")
            if cond():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if f.exists():
                out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """SIGTERM each daemon by PID (reverse start order), SIGKILL after 10 s."""
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
