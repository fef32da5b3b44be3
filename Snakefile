"""ExPO: model extrapolation (arXiv 2404.16792) as a workflow.

checkpoints → (train) → extrapolate → generate → score → report. See README.md.
"""

from snakemake.utils import min_version

min_version("9.0")


report: "report/workflow.rst"


# An experiment given with --configfile is a complete config and *replaces* config.yaml: Snakemake
# would otherwise merge it into the demo config recursively, and the demo world's models, pairs,
# prompt sets and reward models would leak into every experiment. `--config key=value` still
# overrides whichever config is in use.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/world.smk"
include: "rules/checkpoints.smk"
include: "rules/train.smk"
include: "rules/extrapolate.smk"
include: "rules/generate.smk"
include: "rules/score.smk"
include: "rules/search.smk"
include: "rules/report.smk"
include: "rules/multimodal.smk"
include: "rules/judge.smk"
include: "rules/mtbench.smk"
include: "rules/capability.smk"
include: "rules/cards.smk"


# Seconds of work each: on a cluster they run on the login node instead of waiting in the queue.
localrules:
    all,
    world_data,
    world_tokenizer,
    prompt_set,
    reference_outputs,
    alpaca_eval_judge,
    report,
    evaluation_report,


onstart:
    from workflow_scripts.slurm_check import check_slurm_run

    check_slurm_run(workflow)  # SLURM executor only: a job larger than every partition stops the run here


rule all:
    default_target: True
    input:
        list(REPORT_FILES.values()),
        judge_targets(),
        search_report_targets(),
        hallucination_targets(),
        local_judge_targets(),
        mtbench_targets(),
        capability_targets(),
        evaluation_report_targets(),
        all_cards(),
