from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.common import read_jsonl  # noqa: E402
from workflow_scripts.stages import run_generation  # noqa: E402

run_generation(snakemake.input.model, read_jsonl(snakemake.input.prompts),  # noqa: F821
               dict(snakemake.params.decoding), snakemake.output[0],  # noqa: F821
               generator=snakemake.params.generator)  # noqa: F821
