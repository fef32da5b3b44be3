from _boot import run_stage

run_stage(snakemake, "hallucination_report")  # noqa: F821
