"""Zarr arrays (``store.zarr:volumes/raw``, or ``store.zarr`` for a root array).

Reads are lazy: zarr fetches only the chunks a crop touches. The store is reopened for each
read, so a :class:`~emkit.io.Volume` is safe to share between threads and to pickle. Voxel
size and offset come from the array's ``resolution`` and ``offset`` attributes (nm, z y x),
or from the root group's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emkit.errors import InputError, MissingDataError, OverwriteError
from emkit.io._common import (
    atomic_path,
    check_compression,
    nm_tuple,
    remove,
    remove_stale_temps,
    replace_path,
    require_file,
    temp_name,
)

COMPRESSIONS = ("gzip", "zstd", "blosc", None)


def list_keys(path: Path) -> list[str]:
    """Lists the arrays in a Zarr store (v2 or v3 layout), root array as ``''``."""
    require_file(path, what="Zarr store")
    keys = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if ".zarray" in files or _node_type(Path(folder) / "zarr.json") == "array":
            relative = Path(folder).relative_to(path).as_posix()
            keys.append("" if relative == "." else relative)
            dirs.clear()
    return keys


def _node_type(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


def _open_array(path: Path, key: str | None):
    import zarr

    require_file(path, what="Zarr store")
    if key is None:
        keys = list_keys(path)
        if len(keys) == 1:
            key = keys[0]
        elif "" not in keys:
            raise MissingDataError(
                f"Zarr store '{path}' holds {len(keys)} arrays and none at its root; name one "
                f"as '{path}:KEY'; arrays there: {', '.join(keys) or 'none'}"
            )
    try:
        return zarr.open_array(store=str(path), path=key or "", mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        keys = list_keys(path)
        if (key or "") not in keys:
            raise MissingDataError(
                f"no array '{key}' in Zarr store '{path}'; arrays there: "
                f"{', '.join(k or '(root)' for k in keys) or 'none'}"
            ) from exc
        raise InputError(f"cannot open Zarr array '{path}:{key}': {exc}") from exc


def probe(path: Path, key: str | None) -> dict:
    """Reads shape, dtype and voxel size of an array without reading its data.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    array = _open_array(path, key)
    key = array.path or None
    where = f"'{path}:{key}'" if key else f"'{path}'"
    root_attrs = {}
    if key and not {"resolution", "offset"} <= set(array.attrs):
        root_attrs = _root_attributes(path)

    def attr(name):
        value = array.attrs.get(name)
        return root_attrs.get(name) if value is None else value

    return {
        "key": key,
        "shape": tuple(array.shape),
        "dtype": np.dtype(array.dtype),
        "voxel_size_nm": nm_tuple(attr("resolution"), name="resolution", where=where),
        "offset_nm": nm_tuple(attr("offset"), name="offset", where=where),
    }


def attributes(path: Path, key: str | None) -> dict:
    """The attributes of an array as plain Python values.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    return dict(_open_array(path, key).attrs)


def _root_attributes(path: Path) -> dict:
    for name in ("zarr.json", ".zattrs"):
        try:
            meta = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        return meta.get("attributes", {}) if name == "zarr.json" else meta
    return {}


def read(path: Path, key: str | None, box: tuple[slice, ...]) -> np.ndarray:
    """Reads the box (slices of step 1); only the chunks it touches are read.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    array = _open_array(path, key)
    try:
        return np.asarray(array[box] if box else array[()])
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot read Zarr array '{path}:{key}' (corrupt chunk?): {exc}") from exc


def check_no_named_arrays(path: Path) -> None:
    """Refuses to replace a store that holds named arrays with one root array.

    Args:
        path: the Zarr store (it may not exist yet).
    """
    others = [k for k in list_keys(path) if k] if path.exists() else []
    if others:
        raise InputError(
            f"Zarr store '{path}' holds the arrays {', '.join(others)}; write to "
            f"'{path}:KEY', or delete the store to replace it with one root array"
        )


def write(path, key, array, *, voxel_size_nm, offset_nm, overwrite, chunks, compression):
    """Writes an array atomically; see :func:`emkit.io.write_volume`.

    A new store (or a new root array) is written to a temporary folder and renamed. In an
    existing store the array is written under a temporary name beside ``key`` and its
    folder renamed to ``key``; an old array is moved aside first and deleted after.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    check_compression(compression, COMPRESSIONS, fmt="Zarr", path=path)
    if not path.exists() or key is None:
        if path.exists() and not overwrite:
            raise OverwriteError(
                f"Zarr store '{path}' exists; pass --overwrite (overwrite=True) to replace it"
            )
        check_no_named_arrays(path)
        with atomic_path(path) as tmp:
            _create(tmp, key, array, voxel_size_nm, offset_nm, chunks, compression)
        return
    target = path / key
    if target.exists() and not overwrite:
        raise OverwriteError(
            f"array '{path}:{key}' exists; pass --overwrite (overwrite=True) to replace it"
        )
    with atomic_key(path, key) as tmp_key:
        _create(path, tmp_key, array, voxel_size_nm, offset_nm, chunks, compression)


@contextmanager
def atomic_key(path: Path, key: str) -> Iterator[str]:
    """Yields a fresh hidden key beside ``key`` in the Zarr store ``path``, to write under.

    When the block succeeds the temporary array is moved onto ``key`` (an existing array
    there is replaced); when it raises, it is deleted. Temporaries of ``key`` that killed
    processes left are deleted first. The Zarr counterpart of
    :func:`emkit.io._hdf5.atomic_key`.

    Args:
        path: the store (a folder whose root is a Zarr group).
        key: the array to write, e.g. ``"volumes/pred"``.
    """
    import zarr

    try:
        root = zarr.open_group(store=str(path), mode="a")
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(
            f"cannot add '{key}' to '{path}': its root is not a Zarr group ({exc})"
        ) from exc
    parent, _, name = key.rpartition("/")
    if parent:
        root.require_group(parent)
    remove_stale_temps(path / key)
    tmp_key = f"{parent}/{temp_name(name)}".lstrip("/")
    try:
        yield tmp_key
        replace_path(path / tmp_key, path / key)
    finally:
        remove(path / tmp_key)


def _create(store: Path, key, array, voxel_size_nm, offset_nm, chunks, compression):
    import zarr.codecs

    codecs = {
        "gzip": zarr.codecs.GzipCodec(),
        "zstd": zarr.codecs.ZstdCodec(),
        "blosc": zarr.codecs.BloscCodec(),
        None: None,
    }
    attributes = {}
    if voxel_size_nm is not None:
        attributes["resolution"] = list(voxel_size_nm)
    if offset_nm is not None:
        attributes["offset"] = list(offset_nm)
    zarr.create_array(
        store=str(store),
        name=key,
        data=array,
        chunks=tuple(chunks) if chunks else "auto",
        compressors=codecs[compression],
        attributes=attributes,
    )
