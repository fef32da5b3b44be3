from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.search.plan import plan_round  # noqa: E402

plan_round(list(snakemake.input), snakemake.params.aligned, dict(snakemake.params.spec),  # noqa: F821
           snakemake.output[0])  # noqa: F821
