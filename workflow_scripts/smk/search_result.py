from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.search.plan import search_result  # noqa: E402

search_result(list(snakemake.input), snakemake.params.aligned, dict(snakemake.params.spec),  # noqa: F821
              snakemake.output.result, snakemake.output.path)  # noqa: F821
