"""Model cards with evaluation results, once the report has scored every variant.

The card is a separate output (`cards/<pair>/<variant>/README.md`), not an in-place update of the
extrapolated folder: that folder is the output of the extrapolate job and the input of the
generate and score jobs, so rewriting a file in it would make them look outdated (a rerun loop),
and with `keep_extrapolated: false` it is deleted before the report exists. The card is rebuilt
from the manifest copy beside the results; copy it into the checkpoint folder before uploading.
"""


localrules:
    model_card,


rule model_card:
    input:
        manifest=f"{R}/manifests/{{pair}}/{{variant}}.json",
        results=REPORT_FILES["results_long"],
    output:
        f"{R}/cards/{{pair}}/{{variant}}/README.md",
    log:
        f"{R}/logs/cards/{{pair}}/{{variant}}.log",
    conda:
        f"{ENVS}/cards.yaml"
    script:
        f"{SMK}/model_card.py"
