"""Writing volumes atomically, with their voxel size."""

from __future__ import annotations

import os

import numpy as np

from emkit.errors import InputError, OverwriteError
from emkit.io._common import nm_tuple
from emkit.io.spec import VolumeSpec, parse_spec
from emkit.io.volume import BACKENDS

# Formats that hold one array per file: an existing file is refused without overwrite.
_ONE_ARRAY_PER_FILE = ("tiff", "npy", "png")
# Formats that store voxel size and offset.
_WITH_METADATA = ("tiff", "hdf5", "zarr")


def write_volume(
    spec: str | os.PathLike,
    array,
    *,
    voxel_size_nm=None,
    offset_nm=None,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
    compression: str | None = "gzip",
) -> VolumeSpec:
    """Writes an array to a file, atomically, with its voxel size.

    The data goes to a temporary file (or folder, or HDF5/Zarr key) next to the target,
    which is renamed into place only once complete; a failed write leaves nothing behind.
    See the format modules for details (:mod:`emkit.io._hdf5` writes a new dataset into an
    existing file under a temporary key, then renames it inside the file).

    Args:
        spec: where to write: ``out.tif``, ``out.h5:volumes/pred``, ``out.zarr[:key]``,
            ``out.npy``, ``folder/`` (PNG sections) or ``image.png``.
        array: ndarray of shape (Z, Y, X), or any shape (e.g. (C, Z, Y, X) affinities);
            bool, integer or float. A :class:`~emkit.io.Volume` is read first.
        voxel_size_nm: voxel size in nm (z, y, x), stored as the ``resolution`` attribute
            (HDF5, Zarr) or in the TIFF description. ``.npy`` and PNG cannot store it: a
            warning says so.
        offset_nm: position of voxel (0, 0, 0) in nm (z, y, x), stored as ``offset``.
        overwrite: replace an existing file or dataset. Without it, an existing one raises
            :class:`~emkit.errors.OverwriteError`. A new key in an existing HDF5 file or
            Zarr store is always allowed.
        chunks: chunk shape for HDF5 and Zarr (default: chosen by h5py / zarr).
        compression: ``"gzip"`` (HDF5 gzip, Zarr gzip, TIFF deflate) or None; HDF5 also
            takes ``"lzf"`` and Zarr ``"zstd"`` or ``"blosc"``. ``.npy`` and PNG ignore it.

    Returns:
        The :class:`~emkit.io.spec.VolumeSpec` written.

    Raises:
        OverwriteError: the target exists and ``overwrite`` is False.
        InputError: the array cannot be stored in that format, or the options are invalid.
    """
    parsed = parse_spec(spec)
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"cannot write an array of dtype {array.dtype} to '{parsed}'; "
            "expected bool, integer or float"
        )
    where = f"write_volume('{parsed}')"
    voxel_size_nm = nm_tuple(voxel_size_nm, name="voxel_size_nm", where=where, positive=True)
    offset_nm = nm_tuple(offset_nm, name="offset_nm", where=where)
    spatial = min(array.ndim, 3)
    for name, value in (("voxel_size_nm", voxel_size_nm), ("offset_nm", offset_nm)):
        if value is not None and len(value) != spatial:
            raise InputError(
                f"{name} for {where} needs {spatial} values (nm, z y x for a volume), "
                f"got {value} for an array of shape {array.shape}"
            )
    if (voxel_size_nm or offset_nm) and parsed.format not in _WITH_METADATA:
        import warnings

        warnings.warn(
            f"'{parsed.path}' ({parsed.format}) cannot store voxel_size_nm/offset_nm; "
            "they are not saved. Use .tif, .h5 or .zarr to keep them.",
            stacklevel=2,
        )
    if parsed.format in _ONE_ARRAY_PER_FILE and parsed.path.exists() and not overwrite:
        raise OverwriteError(
            f"'{parsed.path}' exists; pass --overwrite (overwrite=True) to replace it"
        )
    BACKENDS[parsed.format].write(
        parsed.path,
        parsed.key,
        array,
        voxel_size_nm=voxel_size_nm,
        offset_nm=offset_nm,
        overwrite=overwrite,
        chunks=chunks,
        compression=compression,
    )
    return parsed
