"""Start-up checks for SLURM runs: stop in seconds, with one line, instead of pending forever.

SLURM accepts a job that asks for more CPUs, memory or GPUs than any node of its partition has
and leaves it pending (`squeue` Reason `PartitionConfig`, or `Resources` for ever); Snakemake then
waits silently. `check_slurm_run` (called from the Snakefile's `onstart:`, so only for real runs)
compares every job about to be submitted with the partitions `sinfo` reports and raises a
`WorkflowError` naming the rule. It also refuses the `--profile profiles/slurm` trap, where the
implicit workflow profile `profiles/default` (one GPU slot, 2 threads) silently overrides the
SLURM profile. Nothing here runs unless the executor is `slurm`.

    python -m workflow_scripts.slurm_check     # prints the partitions as this module reads them
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SINFO_FORMAT = "%P|%c|%m|%G"
"""Partition, CPUs per node, memory per node (MB), generic resources (e.g. `gpu:a100:4(S:0-1)`)."""


@dataclass(frozen=True)
class Partition:
    """The largest node of a partition: what one job can get there at most."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    default: bool = False


@dataclass(frozen=True)
class Request:
    """What one job asks SLURM for."""

    rule: str
    cpus: int
    mem_mb: int
    gpus: int
    partition: str | None = None

    def describe(self) -> str:
        return f"{self.cpus} CPUs, {self.mem_mb} MB, {self.gpus} GPU(s)"


def _gres_gpus(gres: str) -> int:
    """GPUs per node in a sinfo %G field: `gpu:4`, `gpu:a100:4(S:0-1)`, `(null)` -> 0."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres):
        m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if m:
            total += int(m.group(1))
    return total


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from `sinfo -h -o '%P|%c|%m|%G'` (one line per node group; keeps the largest)."""
    best: dict[str, Partition] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, cpus, mem, gres = (f.strip() for f in line.split("|"))
        default = name.endswith("*")
        name = name.rstrip("*")
        new = Partition(name, int(cpus.rstrip("+")), int(mem.rstrip("+")), _gres_gpus(gres), default)
        old = best.get(name)
        if old is not None:
            new = Partition(
                name,
                max(old.cpus, new.cpus),
                max(old.mem_mb, new.mem_mb),
                max(old.gpus, new.gpus),
                old.default or default,
            )
        best[name] = new
    return list(best.values())


def read_partitions() -> list[Partition]:
    out = subprocess.run(["sinfo", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True, check=True)
    return parse_sinfo(out.stdout)


def fits(req: Request, part: Partition) -> bool:
    return req.cpus <= part.cpus and req.mem_mb <= part.mem_mb and req.gpus <= part.gpus


def check_requests(requests: Iterable[Request], partitions: list[Partition]) -> None:
    """Raise ValueError for the first job that fits no partition it may run in.

    A job that names a partition must fit that one; otherwise any partition will do (the plugin
    picks among them with partitions.yaml, or SLURM uses its default partition).
    """
    by_name = {p.name: p for p in partitions}
    for req in requests:
        if req.partition is not None:
            part = by_name.get(req.partition)
            if part is None:
                raise ValueError(
                    f"rule {req.rule}: SLURM partition {req.partition!r} does not exist (sinfo lists {sorted(by_name)})"
                )
            candidates = [part]
        else:
            candidates = partitions
        if not any(fits(req, p) for p in candidates):
            have = "; ".join(f"{p.name}: {p.cpus} CPUs, {p.mem_mb} MB, {p.gpus} GPU(s)" for p in candidates)
            raise ValueError(
                f"rule {req.rule} asks SLURM for {req.describe()}, more than any node has ({have}); "
                "it would pend forever (squeue Reason=PartitionConfig): lower its set-threads/set-resources "
                "in profiles/slurm/config.yaml"
            )


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def job_request(job: Any) -> Request:
    """The request the SLURM plugin makes for a Snakemake job (threads -> --cpus-per-task)."""
    res = job.resources
    return Request(
        rule=job.rule.name,
        cpus=max(1, _as_int(res.get("cpus_per_task")) or _as_int(job.threads, 1)),
        mem_mb=_as_int(res.get("mem_mb")),
        gpus=_as_int(res.get("gpu")),
        partition=res.get("slurm_partition") or None,
    )


def profile_trap(argv: list[str], basedir: Path) -> str | None:
    """The message for `--profile` without `--workflow-profile` when profiles/default exists."""
    given = any(a == "--workflow-profile" or a.startswith("--workflow-profile=") for a in argv)
    if given or not (basedir / "profiles" / "default").is_dir():
        return None
    return (
        "the SLURM executor is running with the implicit workflow profile profiles/default "
        "(gpu: 1, set-threads 2 override --profile): run with --workflow-profile profiles/slurm "
        "(or add --workflow-profile none)"
    )


def check_slurm_run(workflow: Any) -> None:
    """Snakefile `onstart:` hook: no-op unless the executor is slurm; raises WorkflowError."""
    from snakemake.exceptions import WorkflowError

    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or getattr(plugin, "name", None) != "slurm":
        return
    if Path(sys.argv[0]).name in ("snakemake", "__main__.py"):
        trap = profile_trap(sys.argv[1:], Path(workflow.basedir))
        if trap:
            raise WorkflowError(trap)
    jobs = list(workflow.dag.needrun_jobs())
    requests = [job_request(j) for j in jobs if not j.is_local]
    try:
        check_requests(requests, read_partitions())
    except (OSError, subprocess.CalledProcessError) as exc:
        log.warning("SLURM start-up check skipped: sinfo failed (%s)", exc)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for p in read_partitions():
        log.info(
            "%s%s: %d CPUs, %d MB, %d GPU(s) per node",
            p.name,
            " (default)" if p.default else "",
            p.cpus,
            p.mem_mb,
            p.gpus,
        )


if __name__ == "__main__":
    main()
