from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.world.build import write_world  # noqa: E402

write_world(snakemake.params.world, dict(snakemake.output.items()))  # noqa: F821
