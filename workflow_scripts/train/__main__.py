"""``python -m workflow_scripts.train``."""

from .cli import main

main()
