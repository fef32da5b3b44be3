from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.model_card import card_from_report  # noqa: E402

card_from_report(snakemake.input.manifest, snakemake.input.results, snakemake.output[0],  # noqa: F821
                 pair=snakemake.wildcards.pair, variant=snakemake.wildcards.variant)  # noqa: F821
