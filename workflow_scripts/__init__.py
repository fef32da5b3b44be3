"""ExPO workflow: model extrapolation (arXiv 2404.16792) as a Snakemake pipeline.

Each stage is a module with pure functions plus an argparse ``main`` so it can be run alone
(``python -m workflow_scripts.<stage> --help``); the Snakemake rules call the same functions through
thin adapters in ``workflow_scripts/smk/``.
"""

__version__ = "0.1.0"
