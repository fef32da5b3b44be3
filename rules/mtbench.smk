"""MT-Bench as MT-Bench: two-turn answers per variant (FastChat model_answer JSONL), then
single-answer 1-10 grading by a local checkpoint or an API judge (skipped without a key)."""


rule mtbench_answers:
    input:
        model=variant_model_dir,
    output:
        f"{R}/mtbench/model_answer/{{group}}/{{variant}}.jsonl",
    log:
        f"{R}/logs/mtbench_answers/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/mtbench_answers/{{group}}/{{variant}}.tsv"
    conda:
        f"{ENVS}/mtbench.yaml"
    resources:
        gpu=1,
    params:
        model_id=generator_of,
        generation=EXP.mtbench_generation(),
    script:
        f"{SMK}/mtbench_answers.py"


rule mtbench_grade:
    input:
        unpack(mtbench_grade_inputs),
    output:
        f"{R}/mtbench/grade/{{group}}/{{variant}}.json",
    log:
        f"{R}/logs/mtbench_grade/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/mtbench_grade/{{group}}/{{variant}}.tsv"
    conda:
        f"{ENVS}/mtbench.yaml"
    resources:
        gpu=1,
    params:
        grading=EXP.mtbench_grading(),
    script:
        f"{SMK}/mtbench_grade.py"
