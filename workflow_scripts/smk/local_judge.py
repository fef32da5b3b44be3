from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.local_judge import judge_files  # noqa: E402

judge_files(snakemake.input.generations, snakemake.input.baseline, snakemake.input.judge,  # noqa: F821
            snakemake.params.cache, snakemake.output[0], n_boot=snakemake.params.n_boot)  # noqa: F821
