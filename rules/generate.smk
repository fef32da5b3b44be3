"""Prompt sets and answers: one generation job per (prompt set, variant)."""


rule prompt_set:
    input:
        unpack(prompt_inputs),
    output:
        f"{R}/prompts/{{prompt_set}}.jsonl",
    log:
        f"{R}/logs/prompts/{{prompt_set}}.log",
    conda:
        f"{ENVS}/generate.yaml"
    params:
        spec=prompt_spec_of,
    script:
        f"{SMK}/prompts.py"


rule generate:
    input:
        model=variant_model_dir,
        prompts=f"{R}/prompts/{{prompt_set}}.jsonl",
    output:
        f"{R}/generations/{{prompt_set}}/{{group}}/{{variant}}.json",
    log:
        f"{R}/logs/generate/{{prompt_set}}/{{group}}/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/generate/{{prompt_set}}/{{group}}/{{variant}}.tsv"
    wildcard_constraints:
        group=regex_of(list(config["pairs"]) + ["base"]),
    conda:
        f"{ENVS}/generate.yaml"
    resources:
        gpu=1,
    params:
        decoding=EXP.decoding(),
        generator=generator_of,
    script:
        f"{SMK}/generate.py"


rule generate_seeded:
    """One sampling seed's answers (`decoding.seeds`): the seed is the run seed of the per-prompt
    seeds, so each seed is its own job and adding a seed runs only that seed's jobs."""
    input:
        model=variant_model_dir,
        prompts=f"{R}/prompts/{{prompt_set}}.jsonl",
    output:
        f"{R}/generations/{{prompt_set}}/{{group}}/{{variant}}/seed{{seed}}.json",
    log:
        f"{R}/logs/generate/{{prompt_set}}/{{group}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/generate/{{prompt_set}}/{{group}}/{{variant}}/seed{{seed}}.tsv"
    wildcard_constraints:
        group=regex_of(list(config["pairs"]) + ["base"]),
    conda:
        f"{ENVS}/generate.yaml"
    resources:
        gpu=1,
    params:
        decoding=seeded_decoding_of,
        generator=generator_of,
    script:
        f"{SMK}/generate.py"


rule reference_outputs:
    """Reference answers (GPT-4's on MT-Bench / AlpacaEval, or a file) in the generations format,
    so they are scored by the same rules and can serve as the win-rate baseline."""
    output:
        f"{R}/generations/{{prompt_set}}/reference/reference.json",
    log:
        f"{R}/logs/reference/{{prompt_set}}.log",
    conda:
        f"{ENVS}/generate.yaml"
    params:
        spec=reference_spec_of,
    script:
        f"{SMK}/reference.py"
