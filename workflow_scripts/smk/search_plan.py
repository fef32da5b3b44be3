from _boot import run_stage

run_stage(snakemake, "search_plan")  # noqa: F821
