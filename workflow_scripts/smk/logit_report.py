from _boot import run_stage

run_stage(snakemake, "logit_report")  # noqa: F821
