from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.mtbench import grade_file  # noqa: E402

grade_file(snakemake.input.answers, snakemake.params.grading["judge"], snakemake.output[0],  # noqa: F821
           judge_dir=snakemake.input.get("judge"), n_runs=snakemake.params.grading["n_runs"])  # noqa: F821
