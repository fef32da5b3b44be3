"""Where did alignment move the weights? Per-layer ‖Δ‖/‖θ‖ from an extrapolation manifest.

Why: layer-group schemes should be chosen from evidence. The extrapolation engine already
computes ‖θ_aligned − θ_sft‖ and ‖θ_aligned‖ per decoder layer (and for embeddings, final norm
and lm_head) while streaming, so this report costs nothing extra: it only reads manifest.json.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from workflow_scripts.common import atomic_path, read_json, setup_logging

log = logging.getLogger(__name__)

COLUMNS = ["component", "part", "layer", "delta_norm", "aligned_norm", "rel_delta", "n_tensors", "alphas", "zero_delta"]
LANGUAGE_MODEL = "language_model"


def delta_table(manifest: dict) -> pd.DataFrame:
    """One row per decoder layer (``part='layer'``) then embed / norm / lm_head (``layer`` NaN), per
    component: the language model first, then (vision-language manifests, which carry
    ``components:``) the vision tower, projector… each against its own depth.

    ``rel_delta`` = ‖Δ‖/‖θ_aligned‖ where Δ = θ_aligned − θ_sft (independent of α, so any α's
    manifest gives the same table). ``alphas`` lists the α used for that part's tensors;
    ``zero_delta`` marks parts alignment left unchanged (frozen, or unused), None when unknown.
    """
    if "layers" not in manifest or "special" not in manifest:
        raise ValueError("manifest has no 'layers'/'special' statistics (not an extrapolation manifest?)")
    comps = manifest.get("components") or {LANGUAGE_MODEL: manifest}
    order = sorted(comps, key=lambda c: (c != LANGUAGE_MODEL, c))
    rows = [row for c in order for row in _component_rows(c, comps[c])]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["layer"] = df["layer"].astype("Int64")
    for c in ("delta_norm", "aligned_norm", "rel_delta"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def _component_rows(component: str, stats: dict) -> list[dict]:
    def row(part: str, layer: int | None, e: dict) -> dict:
        return {
            "component": component,
            "part": part,
            "layer": layer,
            "delta_norm": e["delta_norm"],
            "aligned_norm": e["aligned_norm"],
            "rel_delta": e["rel_delta"],
            "n_tensors": e.get("n_tensors"),
            "alphas": ",".join(str(a) for a in e.get("alphas", [])),
            "zero_delta": e.get("zero_delta"),
        }

    rows = [row("layer", int(e["layer"]), e) for e in stats.get("layers", [])]
    special = stats.get("special", {})
    rows += [row(part, None, special[part]) for part in ("embed", "norm", "lm_head") if part in special]
    return rows


def plot_delta(df: pd.DataFrame, out_png: str | Path, *, title: str | None = None) -> Path:
    """Line plot of the language model's ‖Δ‖/‖θ‖ over decoder depth, special tensors as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df[df["component"] == LANGUAGE_MODEL] if "component" in df else df
    layers = df[df["part"] == "layer"].sort_values("layer")
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot(layers["layer"].astype(int), layers["rel_delta"], marker="o", ms=3, label="decoder layer")
    styles = {"embed": ":", "norm": "--", "lm_head": "-."}
    for part, ls in styles.items():
        row = df[df["part"] == part]
        if len(row) and pd.notna(row["rel_delta"].iloc[0]):
            ax.axhline(float(row["rel_delta"].iloc[0]), ls=ls, color="gray", lw=1, label=part)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("‖θ_aligned − θ_sft‖ / ‖θ_aligned‖")
    ax.set_title(title or "Where alignment moved the weights")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_png


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="per-layer ‖Δ‖/‖θ‖ table and plot from an extrapolation manifest")
    ap.add_argument("--manifest", required=True, type=Path, help="manifest.json (or the checkpoint folder)")
    ap.add_argument("--out-csv", type=Path, default=None)
    ap.add_argument("--out-png", type=Path, default=None)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    path = args.manifest / "manifest.json" if args.manifest.is_dir() else args.manifest
    df = delta_table(read_json(path))
    if args.out_csv:
        with atomic_path(args.out_csv) as tmp:
            df.to_csv(tmp, index=False)
    if args.out_png:
        plot_delta(df, args.out_png)
    log.info("\n%s", df.to_string(index=False))


if __name__ == "__main__":
    main()
