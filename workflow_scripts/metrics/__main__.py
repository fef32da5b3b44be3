"""``python -m workflow_scripts.metrics`` runs :func:`workflow_scripts.metrics.cli.main`."""

from .cli import main

main()
