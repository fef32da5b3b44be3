from _boot import run_stage

run_stage(snakemake, "checkpoints")  # noqa: F821
