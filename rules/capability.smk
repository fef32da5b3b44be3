"""Capability regression: lm-evaluation-harness tasks on every checkpoint-backed variant."""


rule capability:
    input:
        model=variant_model_dir,
    output:
        f"{R}/capability/{{group}}/{{variant}}.json",
    log:
        f"{R}/logs/capability/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/capability/{{group}}/{{variant}}.tsv"
    conda:
        f"{ENVS}/capability.yaml"
    resources:
        gpu=1,
    params:
        spec=EXP.capability_spec(),
        task_dir=f"{R}/capability/tasks/{{group}}/{{variant}}",
    script:
        f"{SMK}/capability.py"
