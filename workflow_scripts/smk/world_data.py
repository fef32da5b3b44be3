from _boot import run_stage

run_stage(snakemake, "world_data")  # noqa: F821
