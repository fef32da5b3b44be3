from _boot import run_stage

run_stage(snakemake, "extrapolate")  # noqa: F821
