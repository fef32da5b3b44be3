from _boot import run_stage

run_stage(snakemake, "reference")  # noqa: F821
