from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.hallucination_report import build_hallucination_report  # noqa: E402

build_hallucination_report(dict(snakemake.input.items()), dict(snakemake.output.items()),  # noqa: F821
                           dict(snakemake.params.report))  # noqa: F821
