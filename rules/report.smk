"""Tables and plots that tell which α helps and why (also in `snakemake --report report.html`)."""


rule report:
    input:
        generations=all_generations(),
        scores=all_scores(),
        manifests=all_manifests(),
        training=all_training_records(),
        published="resources/expo_published_results.csv",
        search=search_results(),
        searched=searched_targets,
    output:
        summary_html=report(
            REPORT_FILES["summary_html"],
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary (rendered)"},
        ),
        summary_csv=report(
            REPORT_FILES["summary_csv"],
            caption="../report/summary_csv.rst",
            category="Summary",
            labels={"table": "summary (wide CSV)"},
        ),
        summary_md=REPORT_FILES["summary_md"],
        overview_rst=REPORT_FILES["overview_rst"],
        results_long=report(
            REPORT_FILES["results_long"],
            caption="../report/results_long.rst",
            category="Tidy tables",
            labels={"table": "results, long form"},
        ),
        per_prompt=report(
            REPORT_FILES["per_prompt"],
            caption="../report/per_prompt.rst",
            category="Tidy tables",
            labels={"table": "per prompt, long form"},
        ),
        answers_html=report(
            REPORT_FILES["answers_html"],
            caption="../report/answers.rst",
            category="Answers",
            labels={"page": "answer browser"},
        ),
        reward_plot=report(
            REPORT_FILES["reward_plot"],
            caption="../report/reward_vs_alpha.rst",
            category="Rewards",
            labels={"plot": "reward and win rate vs α"},
        ),
        diagnostics_plot=report(
            REPORT_FILES["diagnostics_plot"],
            caption="../report/diagnostics.rst",
            category="Diagnostics",
            labels={"plot": "length, restating, repetition vs α"},
        ),
        delta_csv=report(
            REPORT_FILES["delta_csv"],
            caption="../report/layer_delta.rst",
            category="Weights",
            labels={"table": "per-layer ||Δ||/||θ||"},
        ),
        delta_plot=report(
            REPORT_FILES["delta_plot"],
            caption="../report/layer_delta.rst",
            category="Weights",
            labels={"plot": "per-layer ||Δ||/||θ||"},
        ),
        training_plot=report(
            REPORT_FILES["training_plot"],
            caption="../report/training.rst",
            category="Training",
            labels={"plot": "training curves"},
        ),
        published_csv=report(
            REPORT_FILES["published_csv"],
            caption="../report/published.rst",
            category="Published",
            labels={"table": "published ExPO numbers"},
        ),
        study_csv=report(
            REPORT_FILES["study_csv"],
            caption="../report/study.rst",
            category="Controlled study",
            labels={"table": "method × data fraction (CSV)"},
        ),
        study_md=report(
            REPORT_FILES["study_md"],
            caption="../report/study.rst",
            category="Controlled study",
            labels={"table": "method × data fraction (Markdown)"},
        ),
    log:
        f"{R}/logs/report.log",
    conda:
        f"{ENVS}/report.yaml"
    params:
        report=EXP.report_params(),
    script:
        f"{SMK}/report.py"


rule evaluation_report:
    """MT-Bench, capability and judge tables per variant (only when one of those stages is configured):
    its own rule, so hours of judging never hold back the reward report."""
    input:
        mtbench=mtbench_targets(),
        capability=capability_targets(),
        local_judge=local_judge_targets(),
        alpaca_eval=judge_targets(),
        published_lmeval="resources/expo_published_lmeval.csv",
    output:
        evaluation_html=report(
            L.evaluation_files["evaluation_html"],
            caption="../report/evaluation.rst",
            category="Benchmarks",
            labels={"table": "MT-Bench, capability, judges (rendered)"},
        ),
        evaluation_md=L.evaluation_files["evaluation_md"],
        mtbench_csv=report(
            L.evaluation_files["mtbench_csv"],
            caption="../report/mtbench.rst",
            category="Benchmarks",
            labels={"table": "MT-Bench per variant"},
        ),
        capability_csv=report(
            L.evaluation_files["capability_csv"],
            caption="../report/capability.rst",
            category="Benchmarks",
            labels={"table": "capability per variant and task"},
        ),
        judge_csv=report(
            L.evaluation_files["judge_csv"],
            caption="../report/judge_win_rates.rst",
            category="Benchmarks",
            labels={"table": "judge win rates (with LC)"},
        ),
        evaluation_long=report(
            L.evaluation_files["evaluation_long"],
            caption="../report/evaluation_long.rst",
            category="Tidy tables",
            labels={"table": "benchmarks, long form"},
        ),
        capability_plot=report(
            L.evaluation_files["capability_plot"],
            caption="../report/capability.rst",
            category="Benchmarks",
            labels={"plot": "capability vs α"},
        ),
    log:
        f"{R}/logs/evaluation_report.log",
    conda:
        f"{ENVS}/report.yaml"
    params:
        report=EXP.evaluation_report_params(),
    script:
        f"{SMK}/evaluation_report.py"
