"""The demo world: seeded task data and a tokenizer, built from the generator (never committed)."""


rule world_data:
    output:
        **{name: world_file(name) for name in WORLD_FILES},
    log:
        f"{R}/logs/world_data.log",
    conda:
        f"{ENVS}/train.yaml"
    params:
        world={k: v for k, v in config.get("world", {}).items() if k not in ("architectures", "vocab_size")},
    script:
        f"{SMK}/world_data.py"


rule world_tokenizer:
    input:
        sft=world_file("sft"),
        prefs=world_file("prefs"),
    output:
        directory(f"{R}/world/tokenizer"),
    log:
        f"{R}/logs/world_tokenizer.log",
    conda:
        f"{ENVS}/train.yaml"
    params:
        vocab_size=config.get("world", {}).get("vocab_size", 600),
    script:
        f"{SMK}/world_tokenizer.py"
