"""Atomic writers for the report's tables and pages."""

from __future__ import annotations

import pandas as pd

from ..common import atomic_path


def write_csv(df: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_text(text: str, path: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
