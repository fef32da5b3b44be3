from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.mtbench import generate_file  # noqa: E402

generate_file(snakemake.input.model, snakemake.output[0], model_id=snakemake.params.model_id,  # noqa: F821
              **snakemake.params.generation)  # noqa: F821
