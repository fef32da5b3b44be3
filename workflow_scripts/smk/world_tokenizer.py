from _boot import run_stage

run_stage(snakemake, "world_tokenizer")  # noqa: F821
