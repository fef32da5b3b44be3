from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.alpaca_eval_judge import run_alpaca_eval  # noqa: E402

run_alpaca_eval(snakemake.input.generations, None, snakemake.output[0],  # noqa: F821
                snakemake.params.annotator)  # noqa: F821
