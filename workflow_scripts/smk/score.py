from _boot import run_stage

run_stage(snakemake, "score")  # noqa: F821
