"""``python -m workflow_scripts.extrapolate``."""

from workflow_scripts.cli import run_cli
from workflow_scripts.extrapolate.cli import main

run_cli(main)
