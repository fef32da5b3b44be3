from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.logit_report import logit_vs_weight  # noqa: E402

logit_vs_weight(list(snakemake.input), list(snakemake.params.reward_models), snakemake.output[0])  # noqa: F821
