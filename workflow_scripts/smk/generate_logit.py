from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.logit_extrapolation import run_logit_generation  # noqa: E402

run_logit_generation(dict(snakemake.input.items()), snakemake.params.alpha,  # noqa: F821
                     dict(snakemake.params.decoding), snakemake.output[0],  # noqa: F821
                     generator=snakemake.params.generator)  # noqa: F821
