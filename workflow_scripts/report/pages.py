"""``summary.html``: the summary tables as one self-contained page (shown inside ``snakemake
--report``, which renders HTML results in place), and ``overview.rst``, the generated paragraph
the report's front page (``report/workflow.rst``) includes: which α was chosen and why."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .markdown import display_table, headline, lc_note, legend_lines, shown_reward_models, verdict

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:22px 0 6px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f1f3f5;white-space:normal;max-width:7.5em;vertical-align:bottom}
.ci{color:#666;font-size:11px}td:first-child,th:first-child{text-align:left}
tr.chosen td{background:#fff4d6;font-weight:600}
tr.sft td:first-child,tr.aligned td:first-child{color:#555}
.headline{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:8px 12px;max-width:70em}
ul{margin:4px 0 4px 18px;padding:0}li{margin:2px 0}
.note{color:#555;font-size:13px}
"""


def _md_inline(text: str) -> str:
    """Escape, then the one Markdown mark the legend uses (``**bold**``)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _cell(text: str) -> str:
    """A display string; a ``mean [low, high]`` cell puts its CI on a second, smaller line."""
    m = re.fullmatch(r"(\S+) (\[.+\])", text)
    if not m:
        return html.escape(text)
    return f'{html.escape(m.group(1))}<br><span class="ci">{html.escape(m.group(2))}</span>'


def html_page(title: str, body: str) -> str:
    """A self-contained page (inline style) that ``snakemake --report`` shows in place."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def plain_html_table(df: pd.DataFrame) -> str:
    """Every cell as text (a ``mean [low, high]`` cell with its CI on a second line); "(none)" if empty."""
    if df.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = ("".join(f"<td>{_cell(str(x))}</td>" for x in r) for r in df.itertuples(index=False))
    body = "".join(f"<tr>{cells}</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plain_md_table(df: pd.DataFrame) -> list[str]:
    """A Markdown table of every cell as text ("|" escaped); "(none)" if empty."""
    if df.empty:
        return ["(none)"]
    cols = list(df.columns)
    out = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |" for r in df.itertuples(index=False)]
    return out


def _table(g: pd.DataFrame, shown: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    rows = []
    for (_, r), (_, s) in zip(g.iterrows(), shown.iterrows()):
        cls = r["kind"] + (" chosen" if r["chosen_on_dev"] else "")
        cells = "".join(f"<td>{_cell(str(x))}</td>" for x in s)
        rows.append(f'<tr class="{cls}" data-variant="{html.escape(r["variant_id"])}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def summary_html(df: pd.DataFrame, params: Mapping[str, Any], answers_href: str = "answers.html") -> str:
    """Headline, legend and one table per (pair, prompt set) with its verdict lines."""
    ev = params["evaluation"]
    rms = shown_reward_models(df, params)
    title = f"ExPO summary — {params.get('experiment', '')}".rstrip(" —")
    parts = [f"<h1>{html.escape(title)}</h1>", '<div class="headline"><ul>']
    parts += [f"<li>{html.escape(x)}</li>" for x in headline(df, params)]
    parts += ["</ul></div>", "<ul>", *[f"<li>{_md_inline(x)}</li>" for x in legend_lines(params, df)]]
    parts += [
        f'<li>Every answer, side by side with its rewards and flags: <a href="{html.escape(answers_href)}">'
        "the answer browser</a> (also in the report's <i>Answers</i> category).</li>",
        "</ul>",
    ]
    for (pair, ps), g in df.groupby(["pair", "prompt_set"], sort=False):
        parts.append(f"<h2>{html.escape(pair)} — {html.escape(ps)}</h2>")
        parts.append(_table(g, display_table(g, rms, ev.get("baseline", "aligned"))))
        lines = [x[2:] for x in verdict(g, rms, ev["primary_reward"]) if x.startswith("- ")]
        if lines:
            parts += ["<ul>", *[f"<li>{html.escape(x)}</li>" for x in lines], "</ul>"]
        note = lc_note(g)
        if note:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
    return html_page(title, "\n".join(parts))


def _rst_escape(text: str) -> str:
    return re.sub(r"([\\*_`|])", r"\\\1", text)


def overview_rst(df: pd.DataFrame, params: Mapping[str, Any]) -> str:
    """reStructuredText bullets for the report's front page: the dev choice per pair and its effect."""
    lines = [f"- {_rst_escape(x)}" for x in headline(df, params)]
    return "\n".join(lines) + "\n"
