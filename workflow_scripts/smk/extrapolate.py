import shutil

from _boot import boot

boot(snakemake)  # noqa: F821
from workflow_scripts.extrapolate import Scheme, extrapolate  # noqa: E402

p = snakemake.params  # noqa: F821
scheme = Scheme.from_config(p.alpha if hasattr(p, "alpha") else dict(p.scheme))
extrapolate(snakemake.input.sft, snakemake.input.aligned, snakemake.output.model, scheme,  # noqa: F821
            allow_pickle=p.allow_pickle, threads=snakemake.threads)  # noqa: F821
shutil.copyfile(f"{snakemake.output.model}/manifest.json", snakemake.output.manifest)  # noqa: F821
