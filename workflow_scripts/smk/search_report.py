from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.search.report import build_search_report  # noqa: E402

build_search_report(dict(snakemake.params.pairs), dict(snakemake.params.objective),  # noqa: F821
                    dict(snakemake.output.items()))  # noqa: F821
