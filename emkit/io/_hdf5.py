"""HDF5 datasets (``file.h5:volumes/raw``), read lazily through h5py.

The file is opened for each read, so a :class:`~emkit.io.Volume` holds no handle and can be
used from worker threads and pickled for worker processes. Voxel size and offset come from
the ``resolution`` and ``offset`` attributes (CREMI layout, nm, z y x) of the dataset, or of
the file's root when the dataset has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emkit.errors import InputError, MissingDataError, OverwriteError
from emkit.io._common import (
    atomic_path,
    check_compression,
    is_stale_temp,
    nm_tuple,
    require_file,
    temp_name,
)
from emkit.io.plain import to_plain

COMPRESSIONS = ("gzip", "lzf", None)


def _open(path: Path, mode: str = "r"):
    import h5py

    if mode == "r":
        require_file(path, what="HDF5 file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise InputError(
            f"cannot open '{path}' as HDF5 ({exc}); expected an HDF5 file (.h5, .hdf5, .hdf)"
        ) from exc


def list_keys(path: Path) -> list[str]:
    """Lists the datasets in an HDF5 file, e.g. ``['volumes/raw', ...]``."""
    with _open(path) as f:
        return _dataset_names(f)


def _dataset_names(f) -> list[str]:
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _dataset(f, path: Path, key: str | None):
    import h5py

    if key is None:
        names = _dataset_names(f)
        if len(names) == 1:
            return f[names[0]]
        raise MissingDataError(
            f"'{path}' holds {len(names)} datasets; name one as '{path}:KEY'; "
            f"datasets there: {', '.join(names) or 'none'}"
        )
    try:
        obj = f.get(key)
    except (KeyError, ValueError, TypeError):
        obj = None
    if not isinstance(obj, h5py.Dataset):
        raise MissingDataError(
            f"no dataset '{key}' in '{path}'; datasets there: "
            f"{', '.join(_dataset_names(f)) or 'none'}"
        )
    return obj


def probe(path: Path, key: str | None) -> dict:
    """Reads shape, dtype and voxel size of a dataset without reading its data.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with _open(path) as f:
        ds = _dataset(f, path, key)
        where = f"'{path}:{ds.name.lstrip('/')}'"

        def attr(name):
            value = ds.attrs.get(name)
            return f.attrs.get(name) if value is None else value

        return {
            "key": ds.name.lstrip("/"),
            "shape": tuple(ds.shape),
            "dtype": ds.dtype,
            "voxel_size_nm": nm_tuple(attr("resolution"), name="resolution", where=where),
            "offset_nm": nm_tuple(attr("offset"), name="offset", where=where),
        }


def attributes(path: Path, key: str | None) -> dict:
    """The attributes of a dataset as plain Python values (lists, numbers, strings).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with _open(path) as f:
        return {name: to_plain(value) for name, value in _dataset(f, path, key).attrs.items()}


def read(path: Path, key: str, box: tuple[slice, ...]) -> np.ndarray:
    """Reads the box (slices of step 1) from the dataset; only that box is read.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with _open(path) as f:
        ds = _dataset(f, path, key)
        try:
            return np.asarray(ds[box] if box else ds[()])
        except OSError as exc:
            raise InputError(f"cannot read '{path}:{key}' (corrupt data?): {exc}") from exc


def write(path, key, array, *, voxel_size_nm, offset_nm, overwrite, chunks, compression):
    """Writes a dataset atomically; see :func:`emkit.io.write_volume`.

    A new file is written under a temporary name and renamed. In an existing file the
    dataset is first written under a temporary key, then moved to ``key`` (and the old
    dataset deleted) once complete; a failed write deletes the temporary dataset. HDF5
    does not give back the space of deleted datasets, so repeated overwrites grow the file
    (``h5repack`` shrinks it).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    if key is None:
        raise InputError(
            f"writing HDF5 needs a dataset key, e.g. '{path}:volumes/raw'; got '{path}'"
        )
    check_compression(compression, COMPRESSIONS, fmt="HDF5", path=path)
    if not path.exists():
        with atomic_path(path) as tmp, _open(tmp, "w") as f:
            _create(f, key, array, voxel_size_nm, offset_nm, chunks, compression)
        return
    import h5py

    with _open(path, "a") as f:
        parts = key.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if isinstance(f.get(ancestor), h5py.Dataset):
                raise InputError(
                    f"cannot write '{path}:{key}': '{ancestor}' is a dataset, not a group"
                )
        existing = f.get(key)
        if existing is not None and not isinstance(existing, h5py.Dataset):
            raise InputError(f"'{path}:{key}' is a group, not a dataset; choose another key")
        if existing is not None and not overwrite:
            raise OverwriteError(
                f"dataset '{path}:{key}' exists; pass --overwrite (overwrite=True) to replace it"
            )
        with atomic_key(f, key) as tmp_key:
            _create(f, tmp_key, array, voxel_size_nm, offset_nm, chunks, compression)


@contextmanager
def atomic_key(f, key: str) -> Iterator[str]:
    """Yields a fresh hidden key beside ``key`` in the open HDF5 file ``f``, to write under.

    When the block succeeds the temporary key is moved onto ``key`` (an existing dataset
    there is deleted first); when it raises, the temporary key is deleted, so a failed
    write leaves ``f`` as it was. The HDF5 counterpart of :func:`~emkit.io._common.atomic_path`.
    Temporary keys of ``key`` that killed processes left are deleted first.

    Args:
        f: an HDF5 file open for writing.
        key: the dataset to write, e.g. "volumes/pred".
    """
    import h5py

    parent, _, name = key.rpartition("/")
    group = f[parent] if parent and parent in f else f
    if isinstance(group, h5py.Group):
        for stale in [k for k in group if is_stale_temp(k, name)]:
            del group[stale]
    tmp_key = f"{parent}/{temp_name(name)}".lstrip("/")
    try:
        yield tmp_key
        if key in f:
            del f[key]
        f.move(tmp_key, key)
    finally:
        if tmp_key in f:
            del f[tmp_key]


def _create(f, key, array, voxel_size_nm, offset_nm, chunks, compression):
    options = {}
    if array.size and array.ndim:
        options = {"chunks": chunks or True, "compression": compression}
        if compression == "gzip":
            options["shuffle"] = array.dtype.itemsize > 1
    ds = f.create_dataset(key, data=array, **options)
    if voxel_size_nm is not None:
        ds.attrs["resolution"] = np.asarray(voxel_size_nm, dtype=np.float64)
    if offset_nm is not None:
        ds.attrs["offset"] = np.asarray(offset_nm, dtype=np.float64)
