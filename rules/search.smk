"""Adaptive α search on the dev set (`extrapolation.search`) and logit extrapolation (`logit_alphas`).

The search is a chain of checkpoints, one per round: round r reads the dev scores of every
candidate asked for so far and writes the next candidates; each candidate is an ordinary
`<pair>/alpha<α>` extrapolate → generate → score job (shared with the fixed grid), or, in the
layer-group rounds that follow a converged uniform search (`extrapolation.search.layers`), a
`<pair>/scheme_search_<partition>_<α runs>` variant built by `extrapolate_scheme`. The walk over
the rounds and the budget live in `workflow_scripts/search/planning.py`.
"""


checkpoint search_plan:
    input:
        search_plan_inputs,
    output:
        f"{R}/search/{{pair}}/plan/round{{round}}.json",
    log:
        f"{R}/logs/search/{{pair}}/plan/round{{round}}.log",
    wildcard_constraints:
        pair=regex_of(EXP.search.pairs),
        round=r"\d+",
    conda:
        f"{ENVS}/report.yaml"
    params:
        spec=search_plan_spec,
        aligned=search_aligned,
    script:
        f"{SMK}/search_plan.py"


checkpoint search_result:
    """The search under its budget: the chosen α (answered next on every prompt set) and its path."""
    input:
        search_result_inputs,
    output:
        result=f"{R}/search/{{pair}}/result.json",
        path=f"{R}/search/{{pair}}/alpha_search.csv",
    log:
        f"{R}/logs/search/{{pair}}/result.log",
    wildcard_constraints:
        pair=regex_of(EXP.search.pairs),
    conda:
        f"{ENVS}/report.yaml"
    params:
        spec=search_result_spec,
        aligned=search_aligned,
    script:
        f"{SMK}/search_result.py"


rule search_report:
    input:
        EXP.search.report_files(),
    output:
        search_csv=report(
            L.search_report_files["search_csv"],
            caption="../report/alpha_search.rst",
            category="α search",
            labels={"table": "search path (CSV)"},
        ),
        search_vs_grid=report(
            L.search_report_files["search_vs_grid"],
            caption="../report/alpha_search.rst",
            category="α search",
            labels={"table": "search vs fixed grid"},
        ),
        search_plot=report(
            L.search_report_files["search_plot"],
            caption="../report/alpha_search.rst",
            category="α search",
            labels={"plot": "search path over the grid's dev curve"},
        ),
    log:
        f"{R}/logs/search/report.log",
    conda:
        f"{ENVS}/report.yaml"
    params:
        pairs=EXP.search.report_spec(),
        objective=EXP.search.objective() if EXP.search.enabled else None,
    script:
        f"{SMK}/search_report.py"


rule generate_logit:
    """Decoding-time extrapolation: both checkpoints at every step (HF backend)."""
    input:
        unpack(logit_inputs),
    output:
        f"{R}/generations/{{prompt_set}}/{{pair}}/logit{{alpha}}.json",
    log:
        f"{R}/logs/generate/{{prompt_set}}/{{pair}}/logit{{alpha}}.log",
    benchmark:
        f"{R}/benchmarks/generate/{{prompt_set}}/{{pair}}/logit{{alpha}}.tsv"
    conda:
        f"{ENVS}/generate.yaml"
    resources:
        gpu=1,
    params:
        decoding=EXP.decoding(),
        alpha=alpha_value,
        generator=logit_generator_of,
    script:
        f"{SMK}/generate_logit.py"


ruleorder: generate_logit > generate


rule logit_report:
    """Weight vs logit extrapolation at the same α: rewards and time per token."""
    input:
        EXP.logit_report_files(),
    output:
        report(L.logit_report, caption="../report/logit_vs_weight.rst", category="Logit extrapolation"),
    log:
        f"{R}/logs/logit_report.log",
    conda:
        f"{ENVS}/report.yaml"
    params:
        reward_models=list(config["reward_models"]),
    script:
        f"{SMK}/logit_report.py"
