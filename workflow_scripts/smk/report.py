from _boot import run_stage

run_stage(snakemake, "report")  # noqa: F821
