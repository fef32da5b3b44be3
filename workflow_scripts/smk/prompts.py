from _boot import run_stage

run_stage(snakemake, "prompts")  # noqa: F821
