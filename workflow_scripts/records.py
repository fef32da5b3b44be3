"""Nested prompt fields in generation records: JSON strings there, decoded by readers.

Why: a generation file is an alpaca_eval ``model_outputs`` list, and alpaca_eval puts records in a
data frame and de-duplicates its rows, which fails on unhashable cells (a world prompt's ``task``
dict raises ``TypeError: unhashable type: 'dict'``). Prompt sets keep nested values as they are;
generation records hold them as JSON strings (:func:`flat_value`), and every reader of such a
field goes through :func:`record_field`, which accepts both forms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def flat_value(value: Any) -> Any:
    """A prompt's extra value as a generation record holds it: dicts and lists as a JSON string."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def record_field(record: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A nested field of a record, decoded when it is a JSON string (a generation record's form)."""
    value = record.get(key, default)
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
