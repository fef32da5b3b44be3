"""``python -m workflow_scripts.train``."""

from ..common import run_cli
from .cli import main

run_cli(main)
