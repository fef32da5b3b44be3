"""Reward scores per answer: a reward model (raw logit) or the demo world's gold reward."""


rule score:
    input:
        unpack(score_inputs),
    output:
        f"{R}/scores/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}.json",
    params:
        rm=rm_spec_of,
    log:
        f"{R}/logs/score/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/score/{{prompt_set}}/{{rm}}/{{group}}/{{variant}}.tsv"
    resources:
        gpu=score_gpu,
    conda:
        f"{ENVS}/score.yaml"
    script:
        f"{SMK}/score.py"
