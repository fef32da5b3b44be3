from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.common import write_jsonl  # noqa: E402
from workflow_scripts.prompts import load_prompt_set  # noqa: E402

spec = dict(snakemake.params.spec)  # noqa: F821
if spec["source"] == "world":
    spec = {"source": "file", "path": snakemake.input.world, "limit": spec.get("limit")}  # noqa: F821
write_jsonl(snakemake.output[0], load_prompt_set(spec, limit=spec.get("limit")))  # noqa: F821
