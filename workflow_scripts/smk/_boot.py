"""Make the repository importable from a Snakemake `script:` and set up logging and threads."""

import sys
from pathlib import Path


def boot(snakemake):
    root = str(Path(snakemake.scriptdir).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from workflow_scripts.common import set_threads, setup_logging

    setup_logging(snakemake.log[0] if snakemake.log else None)
    set_threads(snakemake.threads)
