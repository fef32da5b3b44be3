"""Make the repository importable from a Snakemake `script:`, send all output to the rule's log,
and bound threads.

Everything a job prints (our logging, library warnings, tqdm progress bars, C-level messages) goes
to the rule's `log:` file, so a failed job's log tells the whole story (`--show-failed-logs`).
"""

import os
import sys
from pathlib import Path


def boot(snakemake):
    root = str(Path(snakemake.scriptdir).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from workflow_scripts.common import install_error_handling, set_threads, setup_logging

    install_error_handling()  # user errors: one line, the last of the job's log

    if snakemake.log:
        log = Path(snakemake.log[0])
        log.parent.mkdir(parents=True, exist_ok=True)
        stream = open(log, "a", buffering=1, encoding="utf-8")
        os.dup2(stream.fileno(), 2)
        sys.stderr = stream
    setup_logging(None)
    set_threads(snakemake.threads)


def run_stage(snakemake, name):
    """Boot, then run `workflow_scripts.stages.<name>_job(snakemake)`: an adapter is these two lines."""
    boot(snakemake)
    from workflow_scripts import stages

    getattr(stages, f"{name}_job")(snakemake)
