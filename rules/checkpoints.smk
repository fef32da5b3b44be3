"""Source checkpoints: hub snapshots at a pinned revision, GGUF files converted to safetensors.

Local folders are used in place (no copy); trained models come from rules/train.smk. A PEFT adapter
(`adapter_of: <model>`) is merged into that model's folder, its input; a `compose` model is built
from its vision and language models' folders, its inputs.
"""


rule checkpoint_model:
    input:
        unpack(checkpoint_inputs),
    output:
        directory(f"{R}/checkpoints/{{model}}"),
    log:
        f"{R}/logs/checkpoints/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/checkpoints/{{model}}.tsv"
    wildcard_constraints:
        model=regex_of(EXP.downloaded_models()),
    conda:
        f"{ENVS}/checkpoints.yaml"
    params:
        spec=model_spec_of,
    script:
        f"{SMK}/checkpoints.py"
