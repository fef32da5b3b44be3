from _boot import run_stage

run_stage(snakemake, "mtbench_grade")  # noqa: F821
