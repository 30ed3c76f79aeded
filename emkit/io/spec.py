"""Volume specs: the strings that name a volume on disk.

A spec is a path with an optional dataset key after a colon:

- ``stack.tif`` or ``stack.tiff``: a multipage TIFF, one page per section.
- ``file.h5:volumes/raw`` (also ``.hdf5``, ``.hdf``): an HDF5 dataset.
- ``store.zarr:volumes/raw``, or ``store.zarr`` for an array at the root: a Zarr array.
- ``array.npy``: a NumPy array file.
- ``folder/``: a folder of PNG files, one section each, sorted by the number in the name;
  ``image.png``: a single 2D image.
- ``emkit:isbi2012/train-labels``: a file shipped inside the emkit package
  (``emkit/datasets/data/``), with or without its extension.

The key is split off at the *last* colon that follows a ``.h5``, ``.hdf5``, ``.hdf`` or
``.zarr`` suffix, so other colons in a path are kept. ``store.zarr/volumes/raw`` is read as
``store.zarr:volumes/raw``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from emkit.errors import InputError, MissingDataError

# File suffix -> format name. A folder (or a .png file) is the "png" format.
SUFFIXES = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".zarr": "zarr",
    ".npy": "npy",
    ".png": "png",
}

SUPPORTED_FORMATS = (
    "multipage TIFF ('stack.tif', '.tiff'), HDF5 ('file.h5:KEY', '.hdf5', '.hdf'), "
    "Zarr ('store.zarr' or 'store.zarr:KEY'), NumPy ('array.npy'), "
    "a folder of PNG files ('folder/') or one PNG image ('image.png')"
)

PACKAGE_PREFIX = "emkit:"
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "datasets" / "data"

_KEY_SEPARATOR = re.compile(r"\.(?:h5|hdf5|hdf|zarr):", re.IGNORECASE)


@dataclass(frozen=True)
class VolumeSpec:
    """A parsed volume spec.

    Attributes:
        path: the file, folder or Zarr store.
        key: the dataset inside an HDF5 file or Zarr store, or None.
        format: one of ``"tiff"``, ``"hdf5"``, ``"zarr"``, ``"npy"``, ``"png"``.
    """

    path: Path
    key: str | None
    format: str

    def __str__(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)


def parse_spec(spec: str | os.PathLike | VolumeSpec) -> VolumeSpec:
    """Splits a volume spec into path, key and format.

    Args:
        spec: a path, optionally with ``:key`` after an HDF5 or Zarr suffix.

    Returns:
        A :class:`VolumeSpec`.

    Raises:
        InputError: the suffix names no supported format.
        MissingDataError: an ``emkit:`` spec names no shipped file.

    >>> parse_spec("sample_A.hdf:volumes/labels/neuron_ids").key
    'volumes/labels/neuron_ids'
    >>> parse_spec("run:3/pred.zarr").format
    'zarr'
    """
    if isinstance(spec, VolumeSpec):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise InputError(
            f"a volume spec must be a path or string, got {type(spec).__name__}: {spec!r}"
        )
    text = os.fspath(spec)
    if text.startswith(PACKAGE_PREFIX):
        text = str(_package_file(text[len(PACKAGE_PREFIX):]))
    key = None
    matches = list(_KEY_SEPARATOR.finditer(text))
    if matches:
        split = matches[-1].end() - 1
        text, key = text[:split], text[split + 1:].strip("/") or None
    path = Path(text)
    if key is None:
        path, key = _split_inside_zarr(path)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return VolumeSpec(path, key, SUFFIXES[suffix])
    if path.is_dir() or (suffix == "" and text.endswith(("/", os.sep))):
        return VolumeSpec(path, None, "png")
    if suffix == "" and not path.exists():
        raise MissingDataError(
            f"no file or folder '{path}'; expected one of: {SUPPORTED_FORMATS}"
        )
    raise InputError(
        f"cannot tell the format of '{text}' (suffix '{path.suffix}'); "
        f"supported formats: {SUPPORTED_FORMATS}"
    )


def _split_inside_zarr(path: Path) -> tuple[Path, str | None]:
    """Reads ``store.zarr/a/b`` as store ``store.zarr`` and key ``a/b``."""
    if path.suffix.lower() in SUFFIXES:
        return path, None
    for parent in path.parents:
        if parent.suffix.lower() == ".zarr":
            return parent, path.relative_to(parent).as_posix()
    return path, None


def _package_file(name: str) -> Path:
    """Finds a file shipped in ``emkit/datasets/data`` by name, extension optional."""
    candidate = PACKAGE_DATA / name
    if candidate.is_file():
        return candidate
    if candidate.parent.is_dir():
        for suffix in SUFFIXES:
            if candidate.with_name(candidate.name + suffix).is_file():
                return candidate.with_name(candidate.name + suffix)
    shipped = sorted(
        f"emkit:{p.relative_to(PACKAGE_DATA).with_suffix('').as_posix()}"
        for p in PACKAGE_DATA.glob("*/*")
        if p.suffix.lower() in SUFFIXES
    )
    raise MissingDataError(
        f"no file 'emkit:{name}' is shipped with emkit (looked in '{PACKAGE_DATA}'); "
        f"shipped files: {', '.join(shipped) or 'none'}"
    )
