from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.capability import capability_job  # noqa: E402

capability_job(snakemake.input.model, snakemake.output[0], dict(snakemake.params.spec), snakemake.params.task_dir)  # noqa: F821
