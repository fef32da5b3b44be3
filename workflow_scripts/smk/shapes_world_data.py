from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.world.shapes_build import write_shapes_world  # noqa: E402

write_shapes_world(dict(snakemake.params.world), dict(snakemake.output.items()))  # noqa: F821
