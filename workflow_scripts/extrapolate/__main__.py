"""``python -m workflow_scripts.extrapolate``."""

from workflow_scripts.extrapolate.cli import main

main()
