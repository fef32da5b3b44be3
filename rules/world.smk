"""The demo world: seeded task data and a tokenizer, built from the generator (never committed)."""


rule world_data:
    output:
        **{name: world_file(name) for name in WORLD_FILES},
    params:
        world={k: v for k, v in config.get("world", {}).items() if k not in ("architectures", "vocab_size")},
    log:
        f"{R}/logs/world_data.log",
    conda:
        f"{ENVS}/train.yaml"
    script:
        f"{SMK}/world_data.py"


rule world_tokenizer:
    input:
        sft=world_file("sft"),
        prefs=world_file("prefs"),
    output:
        directory(f"{R}/world/tokenizer"),
    params:
        vocab_size=config.get("world", {}).get("vocab_size", 600),
    log:
        f"{R}/logs/world_tokenizer.log",
    conda:
        f"{ENVS}/train.yaml"
    script:
        f"{SMK}/world_tokenizer.py"
