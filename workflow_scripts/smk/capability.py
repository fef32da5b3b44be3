from _boot import run_stage

run_stage(snakemake, "capability")  # noqa: F821
