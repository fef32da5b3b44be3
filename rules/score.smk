"""Reward scores per answer: a reward model (raw logit) or the demo world's gold reward."""


rule score:
    input:
        unpack(score_inputs),
    output:
        f"{R}/scores/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}.json",
    log:
        f"{R}/logs/score/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/score/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}.tsv"
    conda:
        f"{ENVS}/score.yaml"
    resources:
        gpu=score_gpu,
    params:
        rm=rm_spec_of,
    script:
        f"{SMK}/score.py"


rule score_seeded:
    """Scores of one sampling seed's answers (`decoding.seeds`)."""
    input:
        unpack(seeded_score_inputs),
    output:
        f"{R}/scores/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}/seed{{seed}}.json",
    log:
        f"{R}/logs/score/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/score/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}/seed{{seed}}.tsv"
    conda:
        f"{ENVS}/score.yaml"
    resources:
        gpu=score_gpu,
    params:
        rm=rm_spec_of,
    script:
        f"{SMK}/score.py"


rule alpaca_eval_judge:
    """Optional: the real AlpacaEval judge (an API model) on AlpacaEval prompt sets, when
    `evaluation.alpaca_eval_judge` names an annotator. Without the annotator's API key it records
    `status: skipped` and succeeds, so the workflow never fails for lack of a key."""
    input:
        generations=f"{R}/generations/{{prompt_set}}/{{group}}/{{variant}}.json",
    output:
        directory(f"{R}/alpaca_eval/{{prompt_set}}/{{group}}/{{variant}}"),
    log:
        f"{R}/logs/alpaca_eval/{{prompt_set}}/{{group}}/{{variant}}.log",
    conda:
        f"{ENVS}/report.yaml"
    params:
        annotator=EXP.judge_annotator,
    script:
        f"{SMK}/alpaca_eval_judge.py"
