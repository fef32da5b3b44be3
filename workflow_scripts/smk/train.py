from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.stages import train_from_rule  # noqa: E402

train_from_rule(dict(snakemake.input.items()), snakemake.output[0], snakemake.params.train,  # noqa: F821
                threads=snakemake.threads)  # noqa: F821
