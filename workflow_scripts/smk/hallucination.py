from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.hallucination import score_generations  # noqa: E402

score_generations(snakemake.input.generations, snakemake.output[0], dict(snakemake.params.spec),  # noqa: F821
                  seed=snakemake.params.seed)  # noqa: F821
