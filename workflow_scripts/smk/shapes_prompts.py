from _boot import run_stage

run_stage(snakemake, "shapes_prompts")  # noqa: F821
