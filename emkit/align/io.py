"""Transforms files: one HDF5 or ``.npz`` file per stack, written atomically.

A file holds ``matrices`` (Z, 3, 3) float64, ``fields`` (Z, Y, X, 2) float32 when
present, the version key ``emkit_transforms_version``, a ``convention`` text (see
:mod:`emkit.align.transforms`) and ``attrs`` (JSON: method, options, shapes).

>>> import tempfile, pathlib
>>> from emkit.align import from_translations, load_transforms, save_transforms
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.npz"
>>> _ = save_transforms(path, from_translations([[0, 0], [1.5, -2]]), attrs={"method": "demo"})
>>> load_transforms(path).matrices[1, :2, 2].tolist(), read_transforms_attrs(path)
([1.5, -2.0], {'method': 'demo'})
"""

from __future__ import annotations

import numpy as np

from emkit.align.transforms import Transforms
from emkit.errors import InputError
from emkit.io.plain import to_plain

FORMAT_VERSION = 1
VERSION_KEY = "emkit_transforms_version"
CONVENTION = (
    "T_z maps output (aligned) pixel coordinates (y, x) to input (raw) coordinates: "
    "T_z(p) = matrices[z] @ (y, x, 1) + fields[z][p]; aligned[z][p] = raw[z][T_z(p)]"
)
SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".npz": "npz"}


def file_format(path) -> str:
    """``"hdf5"`` or ``"npz"`` from a transforms file's suffix; InputError otherwise."""
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"transforms file '{path}' must end in .h5, .hdf5, .hdf or .npz (a whole file, "
            "no ':key'), got suffix " + repr(suffix)
        )
    return SUFFIXES[suffix]


def save_transforms(path, transforms: Transforms, *, attrs=None, overwrite: bool = False):
    """Writes transforms to one HDF5 or .npz file, atomically.

    The file holds ``matrices`` (Z, 3, 3) float64, ``fields`` (Z, Y, X, 2) float32 when
    present, the version key ``emkit_transforms_version``, the ``convention`` text and
    ``attrs`` (JSON: method, options, shapes). It is written under a temporary name and
    renamed, so a failed write leaves nothing.

    Args:
        path: the file; its suffix (.h5, .hdf5, .hdf or .npz) picks the format.
        transforms: the :class:`~emkit.align.transforms.Transforms` to write.
        attrs: a JSON-able dict saved with them (method, options, shapes), or None.
        overwrite: replace an existing file.

    Returns:
        The ``Path`` written.

    Raises:
        OverwriteError: the file exists and ``overwrite`` is False.
    """
    import json
    from pathlib import Path

    from emkit.errors import OverwriteError
    from emkit.io._common import atomic_path

    path = Path(path)
    kind = file_format(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"'{path}' exists; pass --overwrite (overwrite=True) to replace it")
    text = json.dumps(to_plain(attrs or {}), default=str)
    with atomic_path(path) as tmp:
        if kind == "npz":
            arrays = {"matrices": transforms.matrices, VERSION_KEY: np.array(FORMAT_VERSION),
                      "convention": np.array(CONVENTION), "attrs": np.array(text)}
            if transforms.fields is not None:
                arrays["fields"] = transforms.fields
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                f.attrs[VERSION_KEY] = FORMAT_VERSION
                f.attrs["convention"] = CONVENTION
                f.attrs["attrs"] = text
                f.create_dataset("matrices", data=transforms.matrices)
                if transforms.fields is not None:
                    f.create_dataset("fields", data=transforms.fields, compression="gzip",
                                     chunks=(1, *transforms.fields.shape[1:]))
    return path


def load_transforms(path) -> Transforms:
    """Reads transforms written by :func:`save_transforms`.

    Raises:
        MissingDataError: the file does not exist.
        InputError: it is not an emkit transforms file, or is from a newer version.
    """
    contents = _read(path)
    return Transforms(contents["matrices"], contents.get("fields"))


def read_transforms_attrs(path) -> dict:
    """The ``attrs`` dict saved with the transforms (method, options, shapes)."""
    import json

    return json.loads(_read(path, arrays=False)["attrs"] or "{}")


def is_transforms_file(path) -> bool:
    """True for an existing .npz or HDF5 file that carries the transforms version key."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in SUFFIXES:
        return False
    try:
        _read(path, arrays=False)
    except Exception:  # noqa: BLE001 - any unreadable file is "not transforms"
        return False
    return True


def _read(path, *, arrays: bool = True) -> dict:
    from pathlib import Path

    from emkit.errors import MissingDataError

    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise MissingDataError(f"transforms file not found: '{path}'")
    out = {}
    try:
        if kind == "npz":
            with np.load(path, allow_pickle=False) as f:
                keys = list(f.keys())
                version = f[VERSION_KEY] if VERSION_KEY in keys else None
                out["attrs"] = str(f["attrs"]) if "attrs" in keys else ""
                if arrays and version is not None:
                    out.update({k: f[k] for k in ("matrices", "fields") if k in keys})
        else:
            import h5py

            with h5py.File(path, "r") as f:
                keys = list(f.keys()) + list(f.attrs.keys())
                version = f.attrs.get(VERSION_KEY)
                attrs = f.attrs.get("attrs", "")
                out["attrs"] = attrs.decode() if isinstance(attrs, bytes) else str(attrs)
                if arrays and version is not None:
                    out.update({k: f[k][()] for k in ("matrices", "fields") if k in f})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read transforms from '{path}': {exc}") from exc
    if version is None:
        raise InputError(
            f"'{path}' is not an emkit transforms file: no '{VERSION_KEY}'; it holds "
            f"{', '.join(sorted(keys)) or 'nothing'}"
        )
    if int(version) > FORMAT_VERSION:
        raise InputError(
            f"'{path}' has transforms version {int(version)}; this emkit reads up to "
            f"{FORMAT_VERSION}, update emkit"
        )
    if arrays and "matrices" not in out:
        raise InputError(f"'{path}' has no 'matrices' (Z, 3, 3)")
    return out


__all__ = ["CONVENTION", "FORMAT_VERSION", "file_format", "is_transforms_file",
           "load_transforms", "read_transforms_attrs", "save_transforms"]
