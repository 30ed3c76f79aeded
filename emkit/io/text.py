"""Small text files: a YAML mapping read with one clear error, a text file written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from emkit.errors import InputError, MissingDataError, yaml_problem


def read_yaml_mapping(path: str | os.PathLike, *, what: str, expected: str = "a mapping",
                      empty_ok: bool = False) -> dict:
    """The mapping stored in a YAML file, or one error that names the file.

    Args:
        path: the file.
        what: what the file is, for messages (``"recipe"``, ``"ensemble"``).
        expected: what the mapping holds, for the message when it is not one.
        empty_ok: an empty file reads as ``{}`` instead of an error.

    Returns:
        The mapping.

    Raises:
        MissingDataError: no file at ``path``.
        InputError: the file cannot be read, is not YAML, or is not a mapping.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "a.yaml").write_text("a: 1")
        ...     read_yaml_mapping(Path(d) / "a.yaml", what="settings")
        {'a': 1}
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{what}: no file at '{path}'")
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{what} '{path}' cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{what} '{path}' is not valid YAML: {yaml_problem(exc)}") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{what} '{path}': expected {expected}, got {type(data).__name__}")
    return data


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes a text file atomically: a temporary sibling renamed onto ``path``.

    Args:
        path: the file to write.
        text: its content.

    Returns:
        The path written.
    """
    from emkit.io._common import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


__all__ = ["read_yaml_mapping", "write_text"]
