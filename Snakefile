"""ExPO: model extrapolation (arXiv 2404.16792) as a workflow.

checkpoints → (train) → extrapolate → generate → score → report. See README.md.
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/world.smk"
include: "rules/checkpoints.smk"
include: "rules/train.smk"
include: "rules/extrapolate.smk"
include: "rules/generate.smk"
include: "rules/score.smk"
include: "rules/report.smk"


rule all:
    input:
        list(REPORT_FILES.values()),
    default_target: True
