from _boot import run_stage

run_stage(snakemake, "generate")  # noqa: F821
