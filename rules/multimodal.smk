"""Multimodal experiments: the shapes world's data and tokenizer, its prompt sets, and hallucination
scores (CHAIR with recall, POPE) per answer file with the report that compares them across α.

Training, extrapolation and generation use the generic rules: an image-modality model trains in
`train_model`, a vision-language pair extrapolates with its component scheme in `extrapolate_*`,
and `generate` answers through the checkpoint's processor when the folder holds a VLM.
"""


rule shapes_world_data:
    output:
        **{name: shapes_file(name) for name in WORLD_FILES},
    log:
        f"{R}/logs/shapes_world_data.log",
    conda:
        f"{ENVS}/train.yaml"
    params:
        world=EXP.shapes_world_params(),
    script:
        f"{SMK}/shapes_world_data.py"


rule shapes_world_tokenizer:
    input:
        sft=shapes_file("sft"),
        prefs=shapes_file("prefs"),
    output:
        directory(L.shapes_tokenizer),
    log:
        f"{R}/logs/shapes_world_tokenizer.log",
    conda:
        f"{ENVS}/train.yaml"
    params:
        vocab_size=EXP.shapes_vocab_size(),
    script:
        f"{SMK}/shapes_world_tokenizer.py"


rule shapes_prompt_set:
    """A shapes-world split as a prompt set: records keep the scene (drawn on load) and the gold task.
    POPE / CHAIR sets from files go through the generic `prompt_set` rule."""
    input:
        world=shapes_prompt_file,
    output:
        f"{R}/prompts/{{prompt_set}}.jsonl",
    log:
        f"{R}/logs/prompts/{{prompt_set}}.log",
    wildcard_constraints:
        prompt_set=regex_of(EXP.shapes_prompt_sets()),
    conda:
        f"{ENVS}/generate.yaml"
    params:
        spec=prompt_spec_of,
    script:
        f"{SMK}/shapes_prompts.py"


ruleorder: shapes_prompt_set > prompt_set


rule hallucination:
    """CHAIR_i / CHAIR_s / recall / per-answer F1 and POPE accuracy / F1 / yes-ratio of one answer file."""
    input:
        unpack(hallucination_vocab_inputs),
        generations=f"{R}/generations/{{prompt_set}}/{{group}}/{{variant}}.json",
    output:
        f"{R}/hallucination/{{prompt_set}}/{{group}}/{{variant}}.json",
    log:
        f"{R}/logs/hallucination/{{prompt_set}}/{{group}}/{{variant}}.log",
    wildcard_constraints:
        prompt_set=regex_of(EXP.multimodal_prompt_sets()),
    conda:
        f"{ENVS}/score.yaml"
    params:
        spec=prompt_spec_of,
        seed=EXP.evaluation.get("seed", 0),
    script:
        f"{SMK}/hallucination.py"


rule hallucination_report:
    input:
        metrics=hallucination_inputs(),
        manifests=all_manifests(),
        training=[L.trained(m) for m in EXP.vlm_training_records()],
    output:
        table_csv=report(
            L.hallucination_files["table_csv"],
            caption="../report/hallucination.rst",
            category="Hallucination",
            labels={"table": "CHAIR / recall / POPE per variant (CSV)"},
        ),
        table_md=L.hallucination_files["table_md"],
        table_html=report(
            L.hallucination_files["table_html"],
            caption="../report/hallucination.rst",
            category="Hallucination",
            labels={"table": "CHAIR / recall / POPE per variant, paired Δ vs aligned"},
        ),
        alpha_plot=report(
            L.hallucination_files["alpha_plot"],
            caption="../report/hallucination.rst",
            category="Hallucination",
            labels={"plot": "hallucination vs α"},
        ),
        component_csv=L.hallucination_files["component_csv"],
        component_plot=report(
            L.hallucination_files["component_plot"],
            caption="../report/hallucination.rst",
            category="Weights",
            labels={"plot": "per-component ||Δ||"},
        ),
        training_plot=report(
            L.hallucination_files["training_plot"],
            caption="../report/hallucination.rst",
            category="Training",
            labels={"plot": "VLM training curves"},
        ),
    log:
        f"{R}/logs/hallucination_report.log",
    conda:
        f"{ENVS}/report.yaml"
    params:
        report=EXP.hallucination_params(),
    script:
        f"{SMK}/hallucination_report.py"
