from _boot import run_stage

run_stage(snakemake, "train")  # noqa: F821
