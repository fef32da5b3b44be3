"""``python -m workflow_scripts.checkpoints``."""

from .stage import main

main()
