"""Training: SFT and reward models from scratch (demo world) and DPO/SimPO on a data fraction."""


rule train_model:
    input:
        unpack(train_inputs),
    output:
        directory(f"{R}/trained/{{model}}"),
    params:
        train=train_params,
    log:
        f"{R}/logs/train/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{model}}.tsv"
    wildcard_constraints:
        model=regex_of(trained_models()),
    resources:
        gpu=1,
    conda:
        f"{ENVS}/train.yaml"
    script:
        f"{SMK}/train.py"
