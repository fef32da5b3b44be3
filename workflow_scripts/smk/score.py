from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.stages import score_file  # noqa: E402

score_file(snakemake.input.generations, snakemake.output[0], dict(snakemake.params.rm),  # noqa: F821
           rm_dir=snakemake.input.get("rm"))  # noqa: F821
