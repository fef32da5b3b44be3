from _boot import run_stage

run_stage(snakemake, "local_judge")  # noqa: F821
