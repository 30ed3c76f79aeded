"""Helpers shared by the format modules: metadata values and atomic file writes."""

from __future__ import annotations

import math
import os
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


def check_compression(compression, choices, *, fmt: str, path) -> None:
    """Raises InputError naming the file when ``compression`` is not one of ``choices``.

    Args:
        compression: the requested codec name, or None.
        choices: the codecs the format's writer offers (a tuple, or a mapping's keys).
        fmt: the format's name, for the message (e.g. "HDF5").
        path: the file being written.
    """
    if compression not in choices:
        raise InputError(f"compression {compression!r} is not available for {fmt} '{path}'; "
                         f"expected one of {tuple(choices)}")


def require_file(path: Path, *, what: str) -> None:
    """Raises MissingDataError naming the path when it does not exist.

    Args:
        path: the file.
        what: what it is, for the message (e.g. "HDF5 file").
    """
    if not path.exists():
        raise MissingDataError(f"{what} not found: '{path}'")


def temp_name(name: str, suffix: str = "") -> str:
    """A fresh hidden name for a temporary of ``name``: ``.NAME.emkit-tmp-PID-HEX[SUFFIX]``.

    The process id in the name lets a later run tell a temporary that a killed
    process left behind (:func:`is_stale_temp`) from one that a running process writes.

    Args:
        name: the target's name (without its suffix).
        suffix: the temporary's suffix, e.g. ".h5".
    """
    return f".{name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def is_stale_temp(entry: str, name: str, suffix: str = "") -> bool:
    """True when ``entry`` is a temporary of ``name`` (see :func:`temp_name`) whose
    process is no longer running on this machine.

    Args:
        entry: a name in the target's folder (or group).
        name, suffix: the target's, as given to :func:`temp_name`.
    """
    prefix = f".{name}{TEMP_MARK}"
    if not (entry.startswith(prefix) and entry.endswith(suffix)):
        return False
    return _owner_gone(entry[len(prefix):])


def _owner_gone(after_mark: str) -> bool:
    """True when the process whose id starts ``after_mark`` (``PID-HEX...``, what follows
    :data:`TEMP_MARK` in a temporary's name) is gone, or the name holds no id."""
    pid = after_mark.split("-", 1)[0]
    return not (pid.isdigit() and _running(int(pid)))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temp_sibling(path: Path) -> Path:
    """A fresh hidden name in the folder of ``path``, with the same suffix.

    Temporaries of ``path`` that killed processes left there are removed first, so a
    rerun cleans up after an interrupted one.
    """
    remove_stale_temps(path)
    return path.with_name(temp_name(path.stem, path.suffix))


def sweep_stale_temps(folder: Path) -> None:
    """Deletes every temporary under ``folder`` whose process is gone (a resumed job's)."""
    for root, dirs, files in os.walk(folder):
        for entry in [*dirs, *files]:
            _, mark, rest = entry.partition(TEMP_MARK)
            if mark and entry.startswith(".") and _owner_gone(rest):
                remove(Path(root) / entry)
                if entry in dirs:
                    dirs.remove(entry)


def remove_stale_temps(path: Path) -> None:
    """Deletes the temporaries of ``path`` left in its folder by processes that are gone."""
    folder = path.parent
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if is_stale_temp(entry.name, path.stem, path.suffix):
            remove(entry)


def remove(path: Path) -> None:
    """Deletes a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def make_parent(path: Path) -> None:
    """Creates the folder of an output ``path``; an error names ``path`` when it cannot
    be created or written to."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise InputError(f"cannot write '{path}': '{exc.filename or parent}' is a file, "
                         "not a folder") from exc
    except NotADirectoryError as exc:
        raise InputError(f"cannot write '{path}': a part of '{parent}' is a file, "
                         "not a folder") from exc
    except OSError as exc:
        raise InputError(f"cannot write '{path}': cannot create its folder "
                         f"'{parent}' ({exc.strerror})") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write '{path}': its folder '{parent}' is not writable")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary sibling of ``path`` and moves it onto ``path`` on success.

    The temporary file or folder is removed if the block raises, so a failed write
    leaves nothing behind. An existing ``path`` is replaced only at the very end,
    by one ``os.replace`` (a folder is first moved aside, then deleted).
    """
    make_parent(path)
    tmp = temp_sibling(path)
    try:
        yield tmp
        replace_path(tmp, path)
    finally:
        remove(tmp)


def replace_path(tmp: Path, target: Path) -> None:
    """Moves ``tmp`` onto ``target``; an existing folder is first moved aside, then deleted.

    Args:
        tmp: the finished temporary file or folder.
        target: where it goes.
    """
    if target.is_dir() and not target.is_symlink():
        old = temp_sibling(target)
        target.replace(old)
        tmp.replace(target)
        remove(old)
    else:
        tmp.replace(target)
