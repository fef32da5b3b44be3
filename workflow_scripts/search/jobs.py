"""The search and logit-extrapolation rules' jobs: what each `script:` adapter runs.

``workflow_scripts/smk/<rule>.py`` is ``run_stage(snakemake, "<rule>")``, which calls
``workflow_scripts.stages.<rule>_job``; these are re-exported there. Keeping the glue here means a
fix never touches an adapter (which would rerun users' finished jobs).
"""

from __future__ import annotations

from typing import Any


def search_plan_job(smk: Any) -> None:
    from .plan import plan_round

    plan_round(list(smk.input), smk.params.aligned, dict(smk.params.spec), smk.output[0])


def search_result_job(smk: Any) -> None:
    from .plan import search_result

    search_result(list(smk.input), smk.params.aligned, dict(smk.params.spec), smk.output.result, smk.output.path)


def search_report_job(smk: Any) -> None:
    from .report import build_search_report

    build_search_report(dict(smk.params.pairs), dict(smk.params.objective), dict(smk.output.items()))


def generate_logit_job(smk: Any) -> None:
    from ..logit_extrapolation import run_logit_generation

    p = smk.params
    run_logit_generation(dict(smk.input.items()), p.alpha, dict(p.decoding), smk.output[0], generator=p.generator)


def logit_report_job(smk: Any) -> None:
    from ..logit_report import logit_vs_weight

    logit_vs_weight(list(smk.input), list(smk.params.reward_models), smk.output[0])
