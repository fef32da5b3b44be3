"""θ = θ_aligned + α·(θ_aligned − θ_sft): one job per α and one per layer scheme (CPU/IO work).

The manifest is also copied beside the results so it survives `keep_extrapolated: false`.
"""


rule extrapolate_alpha:
    input:
        unpack(pair_inputs),
    output:
        model=extrapolated_dir(f"{R}/extrapolated/{{pair}}/alpha{{alpha}}"),
        manifest=f"{R}/manifests/{{pair}}/alpha{{alpha}}.json",
    log:
        f"{R}/logs/extrapolate/{{pair}}/alpha{{alpha}}.log",
    benchmark:
        f"{R}/benchmarks/extrapolate/{{pair}}/alpha{{alpha}}.tsv"
    conda:
        f"{ENVS}/extrapolate.yaml"
    params:
        alpha=alpha_of,
        allow_pickle=config["extrapolation"].get("allow_pickle", False),
    script:
        f"{SMK}/extrapolate.py"


rule extrapolate_scheme:
    input:
        unpack(pair_inputs),
    output:
        model=extrapolated_dir(f"{R}/extrapolated/{{pair}}/scheme_{{scheme}}"),
        manifest=f"{R}/manifests/{{pair}}/scheme_{{scheme}}.json",
    log:
        f"{R}/logs/extrapolate/{{pair}}/scheme_{{scheme}}.log",
    benchmark:
        f"{R}/benchmarks/extrapolate/{{pair}}/scheme_{{scheme}}.tsv"
    conda:
        f"{ENVS}/extrapolate.yaml"
    params:
        scheme=scheme_of,
        allow_pickle=config["extrapolation"].get("allow_pickle", False),
    script:
        f"{SMK}/extrapolate.py"
