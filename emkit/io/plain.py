"""Plain Python data for YAML, JSON and file attributes: one conversion for every writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_plain(value):
    """``value`` as plain YAML/JSON data, recursively.

    Tuples become lists, NumPy arrays nested lists, NumPy scalars Python numbers, paths
    strings, bytes UTF-8 text, and mapping keys strings; anything else is returned as it is.

    Args:
        value: a number, string, sequence, mapping, array or path.

    >>> to_plain({"a": (1, np.float32(0.5)), 2: [Path("x")], "b": np.arange(2)})
    {'a': [1, 0.5], '2': ['x'], 'b': [0, 1]}
    """
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


__all__ = ["to_plain"]
