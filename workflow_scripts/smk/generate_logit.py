from _boot import run_stage

run_stage(snakemake, "generate_logit")  # noqa: F821
