from _boot import run_stage

run_stage(snakemake, "model_card")  # noqa: F821
