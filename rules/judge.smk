"""Open local judges: a configured checkpoint judges each extrapolated variant against its pair's
aligned model through alpaca_eval's annotator (logprob-weighted, both presentation orders). One
job per variant, each with its own alpaca_eval annotation cache, so adding an α judges only it."""


rule local_judge:
    input:
        unpack(local_judge_inputs),
    output:
        f"{R}/local_judge/{{prompt_set}}/{{group}}/{{variant}}.json",
    log:
        f"{R}/logs/local_judge/{{prompt_set}}/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/local_judge/{{prompt_set}}/{{group}}/{{variant}}.tsv"
    conda:
        f"{ENVS}/judge.yaml"
    resources:
        gpu=1,
    params:
        cache=f"{R}/local_judge/{{prompt_set}}/{{group}}/{{variant}}.cache.json",
        n_boot=EXP.evaluation.get("bootstrap", 1000),
    script:
        f"{SMK}/local_judge.py"
