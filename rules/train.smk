"""Training: SFT and reward models from scratch (demo world) and DPO/SimPO on a data fraction."""


rule train_model:
    input:
        unpack(train_inputs),
    output:
        directory(f"{R}/trained/{{model}}"),
    log:
        f"{R}/logs/train/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{model}}.tsv"
    wildcard_constraints:
        model=regex_of(EXP.trained_models()),
    conda:
        f"{ENVS}/train.yaml"
    resources:
        gpu=1,
    params:
        train=train_params,
    script:
        f"{SMK}/train.py"
