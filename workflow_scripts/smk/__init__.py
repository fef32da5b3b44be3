"""Thin Snakemake adapters: unpack `snakemake.input/output/params` and call the library.

Keeping these tiny matters: Snakemake reruns every job of a rule whose `script:` file changed, so
all logic lives in the library modules, which can be fixed without invalidating results.
"""
