"""Training curves for the report: a plot and a small table from ``training_history.csv``.

Why: a preference run can diverge while its final numbers look plausible (the Align-Anything LLaVA
DPO case); the report must show loss, reward margin and reward accuracy over steps for every
trained checkpoint, and flag runs whose loss ends well above its best or turns non-finite.
The CSV is written by :mod:`workflow_scripts.train` (one row per optimizer step).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from .common import atomic_path, setup_logging, write_json

log = logging.getLogger(__name__)

# (column, title) in plotting order; the first present among alternatives is used.
PANELS: list[tuple[tuple[str, ...], str]] = [
    (("loss",), "loss"),
    (("rewards/margins", "margin"), "reward margin (chosen - rejected)"),
    (("rewards/accuracies", "accuracy", "mean_token_accuracy"), "reward accuracy / token accuracy"),
    (("learning_rate",), "learning rate"),
]


def read_history(history_csv: str | Path):
    """The per-step history as a DataFrame sorted by step (numeric columns coerced)."""
    import pandas as pd

    path = Path(history_csv)
    if not path.exists():
        raise ValueError(f"training history {path} does not exist")
    df = pd.read_csv(path)
    if "step" not in df.columns or "loss" not in df.columns:
        raise ValueError(f"{path}: not a training history (needs 'step' and 'loss' columns)")
    for c in df.columns:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values("step").reset_index(drop=True)


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average; per-step metrics on small batches are too noisy to read raw."""
    out, acc, q = [], 0.0, []
    for v in values:
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def summarize_curves(history_csv: str | Path, *, tail: float = 0.1, diverge_ratio: float = 1.5) -> dict:
    """Start/end/best of each curve and a ``diverging`` flag.

    ``end`` values are means over the last ``tail`` fraction of steps (at least one step), so one
    noisy batch does not decide the row. A run is flagged ``diverging`` when its loss becomes
    non-finite, or its end loss exceeds ``diverge_ratio`` × the best smoothed loss *and* its start
    loss (a run still above its start never learned; one that came down and went back up diverged).
    """
    df = read_history(history_csv)
    n = len(df)
    k = max(1, int(math.ceil(tail * n)))
    out: dict = {"steps": int(df["step"].max()) if n else 0, "n_logged": n}
    for cols, _ in PANELS[:3]:
        col = next((c for c in cols if c in df.columns and df[c].notna().any()), None)
        if col is None:
            continue
        s = df[col].dropna()
        out[col] = {
            "start": float(s.iloc[:k].mean()),
            "end": float(s.iloc[-k:].mean()),
            "min": float(s.min()),
            "max": float(s.max()),
        }
    loss = df["loss"].tolist()
    finite = all(math.isfinite(v) for v in loss)
    diverging = not finite
    if finite and n >= 4:
        best = min(_smooth(loss, k))
        end = out["loss"]["end"]
        diverging = end > diverge_ratio * best and end > out["loss"]["start"] and best > 0
    out["diverging"] = bool(diverging)
    return out


def _run_name(path: Path) -> str:
    """Label for a run: its checkpoint folder name (the history CSV sits inside it)."""
    return path.parent.name or path.stem


def _logged_panels(runs) -> list[tuple[str, str]]:
    """The (column, label) of each panel some run logged: the first of its candidate columns with values."""
    panels = []
    for cols, label in PANELS:
        col = next((c for c in cols if any(c in df.columns and df[c].notna().any() for _, df, _ in runs)), None)
        if col is not None:
            panels.append((col, label))
    return panels


def _draw_run(axes, panels, i: int, path: Path, df, summary: dict, *, smooth: int | None, single: bool) -> None:
    """One run's curves on the panels: raw per step (one run only) and its moving average; LR raw."""
    window = smooth or max(1, len(df) // 20)
    name = _run_name(path) + (" (DIVERGING)" if summary["diverging"] else "")
    color = f"C{i % 10}"
    for ax, (col, _label) in zip(axes, panels):
        if col not in df.columns:
            continue
        s = df[["step", col]].dropna()
        if col == "learning_rate":
            ax.plot(s["step"], s[col], color=color, lw=1.0)
            continue
        if single:
            ax.plot(s["step"], s[col], color="0.75", lw=0.8, label="per step")
        ax.plot(
            s["step"],
            _smooth(s[col].tolist(), window),
            color=color,
            lw=1.4,
            label=f"mean of {window}" if single else name,
        )


def plot_curves(
    history_csv: str | Path | Sequence[str | Path],
    out_png: str | Path,
    *,
    title: str | None = None,
    smooth: int | None = None,
) -> Path:
    """Plot loss, reward margin, reward accuracy and LR against step (raw + moving average).

    ``history_csv`` is one history or a list of them; several runs share the panels, one colour
    each, labelled by checkpoint folder (with many runs only the moving averages are drawn, so
    the figure stays readable). Panels whose metric no run logged are skipped (an SFT run has no
    margins). Runs flagged by :func:`summarize_curves` as diverging are marked in the legend.
    Written atomically; returns ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [Path(history_csv)] if isinstance(history_csv, (str, Path)) else [Path(h) for h in history_csv]
    if not paths:
        raise ValueError("plot_curves needs at least one training history")
    runs = [(p, read_history(p), summarize_curves(p)) for p in paths]
    panels = _logged_panels(runs)
    single = len(runs) == 1
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0 if single else 3.6), squeeze=False)
    for i, (path, df, summary) in enumerate(runs):
        _draw_run(axes[0], panels, i, path, df, summary, smooth=smooth, single=single)
    for ax, (col, label) in zip(axes[0], panels):
        ax.set_title(label if col == label else f"{label}\n[{col}]", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if single:
        axes[0][0].legend(fontsize=7)
        head = title or _run_name(paths[0])
        if runs[0][2]["diverging"]:
            head += "  (WARNING: loss diverging)"
        fig.suptitle(head, fontsize=10)
        fig.tight_layout()
    else:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 5), 1, 1))
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    log.info("training curves of %d run(s) written to %s", len(runs), out_png)
    return out_png


def curves_table(histories: dict[str, str | Path]):
    """One row per run (name → history CSV): steps, loss start→end, final margin/accuracy, flag.

    The report shows this next to the plots so divergence is visible at a glance.
    """
    import pandas as pd

    rows = []
    for name, path in histories.items():
        s = summarize_curves(path)
        row = {"run": name, "steps": s["steps"], "loss_start": s["loss"]["start"], "loss_end": s["loss"]["end"]}
        for key, short in (
            ("rewards/margins", "margin_end"),
            ("margin", "margin_end"),
            ("rewards/accuracies", "accuracy_end"),
            ("accuracy", "accuracy_end"),
            ("mean_token_accuracy", "token_accuracy_end"),
        ):
            if key in s and short not in row:
                row[short] = s[key]["end"]
        row["diverging"] = s["diverging"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("history", nargs="+", help="training_history.csv file(s)")
    ap.add_argument("--out", required=True, help="PNG path (several histories share one figure)")
    ap.add_argument("--summary", help="write the per-run summary table as JSON here")
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    plot_curves(a.history, a.out)
    if a.summary:
        table = curves_table({Path(h).parent.name: h for h in a.history})
        write_json(a.summary, table.to_dict(orient="records"))


if __name__ == "__main__":
    main()
