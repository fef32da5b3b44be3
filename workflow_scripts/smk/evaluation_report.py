from _boot import run_stage

run_stage(snakemake, "evaluation_report")  # noqa: F821
