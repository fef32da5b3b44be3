from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.world.tokenizer import build  # noqa: E402

build(list(snakemake.input), snakemake.output[0], snakemake.params.vocab_size)  # noqa: F821
