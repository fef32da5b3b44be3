from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.world.shapes_build import build_shapes_tokenizer  # noqa: E402

build_shapes_tokenizer(snakemake.input.sft, snakemake.input.prefs, snakemake.output[0],  # noqa: F821
                       snakemake.params.vocab_size)  # noqa: F821
