"""NumPy ``.npy`` files, read lazily through a memory map. They carry no voxel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emkit.errors import InputError
from emkit.io._common import atomic_path, require_file


def _load(path: Path) -> np.ndarray:
    require_file(path, what="NumPy file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"'{path}' is not a readable .npy array file: {exc}") from exc


def probe(path: Path, key: str | None) -> dict:
    """Shape and dtype from the memory-mapped file (a .npy stores no voxel size).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    array = _load(path)
    return {"key": None, "shape": array.shape, "dtype": array.dtype,
            "voxel_size_nm": None, "offset_nm": None}


def read(path: Path, key: str | None, box: tuple[slice, ...]) -> np.ndarray:
    """The box, copied out of the memory-mapped file.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    return np.array(_load(path)[box])


def write(path, key, array, *, voxel_size_nm, offset_nm, overwrite, chunks, compression):
    """Writes a ``.npy`` file atomically (uncompressed; ``compression`` does not apply).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with atomic_path(path) as tmp:
        np.save(tmp, array, allow_pickle=False)
