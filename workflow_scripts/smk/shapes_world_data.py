from _boot import run_stage

run_stage(snakemake, "shapes_world_data")  # noqa: F821
