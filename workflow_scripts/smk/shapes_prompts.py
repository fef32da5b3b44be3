from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.world.shapes_build import write_shapes_prompts  # noqa: E402

write_shapes_prompts(snakemake.input.world, snakemake.output[0], dict(snakemake.params.spec))  # noqa: F821
