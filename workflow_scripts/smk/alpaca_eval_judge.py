from _boot import run_stage

run_stage(snakemake, "alpaca_eval_judge")  # noqa: F821
