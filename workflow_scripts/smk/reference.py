from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.common import write_json  # noqa: E402
from workflow_scripts.prompts import load_reference_outputs  # noqa: E402

spec = dict(snakemake.params.spec)  # noqa: F821
limit = spec.pop("limit", None)
write_json(snakemake.output[0], load_reference_outputs(spec, limit=limit))  # noqa: F821
