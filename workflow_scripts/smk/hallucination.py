from _boot import run_stage

run_stage(snakemake, "hallucination")  # noqa: F821
