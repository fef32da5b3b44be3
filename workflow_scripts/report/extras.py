"""Plots and tables from other stages' records: per-layer ‖Δ‖ (extrapolation manifests) and the
training curves of aligned models trained in the workflow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..common import read_json
from .files import write_csv
from .plots import _plt, placeholder_png, save


def layer_delta(manifests: Sequence[str], out_csv: str, out_png: str) -> pd.DataFrame:
    """Per-layer ‖Δ‖/‖θ‖ per pair (Δ does not depend on α: one manifest per pair suffices)."""
    from ..delta_report import delta_table

    frames, seen = [], set()
    for m in sorted(manifests):
        pair = Path(m).parent.name
        if pair in seen:
            continue
        seen.add(pair)
        frames.append(delta_table(read_json(m)).assign(pair=pair))
    df = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["pair", "part", "layer", "delta_norm", "aligned_norm", "rel_delta"])
    )
    write_csv(df, out_csv)
    if df.empty:
        placeholder_png(out_png, "no extrapolation manifests")
        return df
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for pair, g in df[df.part == "layer"].groupby("pair"):
        ax.plot(g.layer, g.rel_delta, "o-", label=pair)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("‖θ_aligned − θ_sft‖ / ‖θ_aligned‖")
    ax.margins(x=0.05, y=0.12)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, out_png)
    return df


def training_plot(trained_dirs: Sequence[str], out_png: str) -> None:
    """Training curves of the aligned models trained in this workflow (a placeholder otherwise)."""
    histories = [Path(d) / "training_history.csv" for d in trained_dirs]
    histories = [h for h in histories if h.exists()]
    if not histories:
        placeholder_png(out_png, "no aligned model was trained in this experiment")
        return
    from ..training_curves import plot_curves

    plot_curves([str(h) for h in histories], out_png)
