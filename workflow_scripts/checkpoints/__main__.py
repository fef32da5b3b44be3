"""``python -m workflow_scripts.checkpoints``."""

from ..common import run_cli
from .stage import main

run_cli(main)
