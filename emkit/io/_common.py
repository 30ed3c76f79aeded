"""Helpers shared by the format modules: metadata values and atomic file writes."""

from __future__ import annotations

import math
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emkit.errors import InputError, MissingDataError

TEMP_MARK = ".emkit-tmp-"


def nm_tuple(value, *, name: str, where: str, positive: bool = False):
    """Reads a voxel size or offset in nm as a tuple of floats (None stays None).

    Args:
        value: a sequence of numbers, or None.
        name: the attribute or argument name, for messages.
        where: the file or key it came from, for messages.
        positive: require every value to be > 0 (voxel sizes).

    Returns:
        A tuple of floats, or None.
    """
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in np.asarray(value, dtype=float).reshape(-1))
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} of {where} must be numbers in nm (z, y, x), got {value!r}"
        ) from exc
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} of {where} must be finite numbers in nm, got {value!r}")
    if positive and not all(v > 0 for v in values):
        raise InputError(f"{name} of {where} must be positive (nm), got {value!r}")
    return values


def require_file(path: Path, *, what: str) -> None:
    """Raises MissingDataError naming the path when it does not exist."""
    if not path.exists():
        raise MissingDataError(f"{what} not found: '{path}'")


def temp_sibling(path: Path) -> Path:
    """A fresh hidden name in the folder of ``path``, with the same suffix."""
    return path.with_name(f".{path.stem}{TEMP_MARK}{secrets.token_hex(4)}{path.suffix}")


def remove(path: Path) -> None:
    """Deletes a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary sibling of ``path`` and moves it onto ``path`` on success.

    The temporary file or folder is removed if the block raises, so a failed write
    leaves nothing behind. An existing ``path`` is replaced only at the very end,
    by one ``os.replace`` (a folder is first moved aside, then deleted).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = temp_sibling(path)
            path.replace(old)
            tmp.replace(path)
            remove(old)
        else:
            tmp.replace(path)
    finally:
        remove(tmp)
