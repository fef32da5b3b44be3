from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.checkpoints import materialize  # noqa: E402

materialize(dict(snakemake.params.spec), snakemake.output[0])  # noqa: F821
