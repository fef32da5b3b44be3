from _boot import run_stage

run_stage(snakemake, "search_report")  # noqa: F821
