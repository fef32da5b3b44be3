from _boot import run_stage

run_stage(snakemake, "search_result")  # noqa: F821
