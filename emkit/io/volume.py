"""Lazy volumes: open a stored array, read crops of it, check its dimensions."""

from __future__ import annotations

import operator
import os
from pathlib import Path

import numpy as np

from emkit.errors import InputError
from emkit.io import _hdf5, _npy, _png, _tiff, _zarr
from emkit.io.spec import VolumeSpec, parse_spec

# Format name -> back-end module. Each back-end has the same functions (their arguments
# are documented here once):
#   probe(path, key) -> {"key", "shape", "dtype", "voxel_size_nm", "offset_nm"}, read from
#       headers only. ``path`` is the file (a Zarr store: its folder); ``key`` the dataset
#       inside it, None for a format that holds one array.
#   read(path, key, box) -> ndarray: ``box`` is one slice per axis, start and stop set,
#       inside the array; only that box is read (or the sections/chunks it covers).
#   write(path, key, array, *, voxel_size_nm, offset_nm, overwrite, chunks, compression):
#       atomically; the keywords are emkit.io.write_volume's.
#   optionally list_keys(path) -> the keys inside, and attributes(path, key) -> a dict.
BACKENDS = {"tiff": _tiff, "hdf5": _hdf5, "zarr": _zarr, "npy": _npy, "png": _png}

_AXES = {2: "(y, x)", 3: "(z, y, x)", 4: "(c, z, y, x)"}


class Volume:
    """A stored array that is read only when indexed.

    A Volume holds the path, key, shape, dtype and voxel size, never the data or an open
    file, so it is cheap, thread-safe and picklable. Indexing with integers, slices (any
    step), ``...`` or integer/boolean arrays follows NumPy and reads only the bounding box
    of the selection (HDF5, Zarr: the chunks it touches; TIFF, PNG: the sections it
    covers). ``np.asarray(volume)`` reads everything.

    Attributes:
        path: the file, folder or Zarr store.
        key: the dataset in an HDF5 file or Zarr store, or None.
        format: ``"tiff"``, ``"hdf5"``, ``"zarr"``, ``"npy"`` or ``"png"``.
        shape: the array shape, e.g. ``(Z, Y, X)``.
        dtype: the NumPy dtype.
        voxel_size_nm: voxel size in nm (z, y, x), or None when the file has none.
        offset_nm: position of voxel (0, 0, 0) in nm (z, y, x), or None.
    """

    def __init__(self, path, key, format, shape, dtype, voxel_size_nm=None, offset_nm=None):
        self.path = Path(path)
        self.key = key
        self.format = format
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.voxel_size_nm = voxel_size_nm
        self.offset_nm = offset_nm

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def spec(self) -> str:
        """The spec that reopens this volume, e.g. ``'file.h5:volumes/raw'``."""
        return str(VolumeSpec(self.path, self.key, self.format))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d volume")
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        box, post = _plan_index(index, self.shape)
        if any(s.stop == s.start for s in box):
            data = np.empty(tuple(s.stop - s.start for s in box), dtype=self.dtype)
        else:
            data = BACKENDS[self.format].read(self.path, self.key, box)
        return data if post is None else data[post]

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def read(self, roi=None) -> np.ndarray:
        """Reads ``roi`` (anything that indexes the volume; None: everything)."""
        return self[...] if roi is None else self[roi]

    def __repr__(self) -> str:
        return (
            f"Volume('{self.spec}', shape={self.shape}, dtype={self.dtype}, "
            f"voxel_size_nm={self.voxel_size_nm})"
        )


def open_volume(spec: str | os.PathLike | Volume) -> Volume:
    """Opens a stored volume lazily; nothing but its header is read.

    Args:
        spec: ``stack.tif``, ``file.h5:volumes/raw``, ``store.zarr[:key]``, ``array.npy``,
            a folder of PNGs, or ``emkit:isbi2012/train-labels`` (see :mod:`emkit.io.spec`).
            A Volume is returned as it is.

    Returns:
        A :class:`Volume` with axes as stored, e.g. ``(Z, Y, X)``.

    Raises:
        MissingDataError: the file, or the key inside it, does not exist (the message lists
            the keys that do).
        InputError: the file is damaged or its format is not supported.
    """
    if isinstance(spec, Volume):
        return spec
    parsed = parse_spec(spec)
    info = BACKENDS[parsed.format].probe(parsed.path, parsed.key)
    return Volume(parsed.path, info.pop("key"), parsed.format, **info)


def read_volume(spec: str | os.PathLike | Volume, *, roi=None) -> np.ndarray:
    """Reads a stored volume, or the crop ``roi`` of it, into memory.

    Args:
        spec: a volume spec (see :func:`open_volume`).
        roi: an index in voxels, e.g. ``np.s_[0:2, 100:356, 100:356]``; None reads all.

    Returns:
        ndarray of shape (Z, Y, X) (as stored), or of the crop.
    """
    return open_volume(spec).read(roi)


def list_keys(path: str | os.PathLike) -> list[str]:
    """Lists the datasets of an HDF5 file or the arrays of a Zarr store.

    Args:
        path: an HDF5 file or Zarr store (a key after ``:`` is ignored).

    Returns:
        Keys such as ``['volumes/labels/neuron_ids', 'volumes/raw']``; a Zarr root array is
        ``''``. Other formats hold one array and give ``[]``.
    """
    parsed = parse_spec(path)
    backend = BACKENDS[parsed.format]
    return backend.list_keys(parsed.path) if hasattr(backend, "list_keys") else []


def read_attributes(spec: str | os.PathLike | Volume) -> dict:
    """Reads the metadata attributes stored with a volume.

    Args:
        spec: a volume spec or :class:`Volume`.

    Returns:
        HDF5/Zarr: the dataset's attributes (e.g. ``resolution``, ``labeled_sections``) as
        plain Python values; TIFF: the emkit JSON description; other formats: ``{}``.
    """
    volume = open_volume(spec)
    backend = BACKENDS[volume.format]
    if not hasattr(backend, "attributes"):
        return {}
    return backend.attributes(volume.path, volume.key)


def require_ndim(array, ndim: int | tuple[int, ...], *, name: str | None = None):
    """Checks the number of dimensions of an array or volume.

    Args:
        array: an ndarray, a :class:`Volume`, or anything with ``.shape``.
        ndim: the allowed number of dimensions, or a tuple of them.
        name: what the array is, for the message (default: the volume's spec).

    Returns:
        ``array``, unchanged.

    Raises:
        InputError: e.g. "expected a 3D (z, y, x) volume, got shape (512, 512) from 'a.tif'".
    """
    shape = tuple(np.shape(array) if not hasattr(array, "shape") else array.shape)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if len(shape) in allowed:
        return array
    if name is None and isinstance(array, Volume):
        name = array.spec
    expected = " or ".join(f"{n}D {_AXES.get(n, '')}".rstrip() for n in allowed)
    source = f" from '{name}'" if name else ""
    raise InputError(f"expected a {expected} volume, got shape {shape}{source}")


def _plan_index(index, shape):
    """Splits a NumPy index into a box to read and an index to apply to the box.

    Returns:
        ``(box, post)``: ``box`` is one ``slice(start, stop)`` per axis (step 1, inside the
        shape); ``post`` indexes the box to give what ``index`` gives on the full array, or
        is None when the box is the answer.
    """
    items = index if isinstance(index, tuple) else (index,)
    ellipses = [i for i, item in enumerate(items) if item is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        fill = len(shape) - (len(items) - 1)
        items = items[:at] + (slice(None),) * max(fill, 0) + items[at + 1:]
    if len(items) > len(shape):
        raise IndexError(f"too many indices for a volume of shape {shape}: {index!r}")
    items = items + (slice(None),) * (len(shape) - len(items))
    box, post, trivial = [], [], True
    for axis, (item, n) in enumerate(zip(items, shape)):
        if isinstance(item, slice):
            r = range(*item.indices(n))
            if not r:
                box.append(slice(0, 0))
                post.append(slice(None))
                continue
            lo, hi = min(r[0], r[-1]), max(r[0], r[-1]) + 1
            box.append(slice(lo, hi))
            post.append(slice(r[0] - lo, None, r.step))
            trivial &= r.step == 1
            continue
        if item is None or isinstance(item, (bool, np.bool_)):
            raise IndexError(f"volumes do not take {item!r} (np.newaxis or a bool) as an index")
        trivial = False
        try:
            i = operator.index(item)
        except TypeError:
            i = None
        if i is not None:
            i += n if i < 0 else 0
            if not 0 <= i < n:
                raise IndexError(f"index {item} is out of bounds for axis {axis} with size {n}")
            box.append(slice(i, i + 1))
            post.append(0)
            continue
        indices = _array_index(item, n, axis)
        lo, hi = (int(indices.min()), int(indices.max()) + 1) if indices.size else (0, 0)
        box.append(slice(lo, hi))
        post.append(indices - lo)
    return tuple(box), (None if trivial else tuple(post))


def _array_index(item, n: int, axis: int) -> np.ndarray:
    indices = np.asarray(item)
    if indices.dtype == bool:
        if indices.shape != (n,):
            raise IndexError(
                f"boolean index of shape {indices.shape} does not match axis {axis} of size {n}"
            )
        return np.flatnonzero(indices)
    if indices.dtype.kind not in "iu":
        raise IndexError(f"volumes are indexed by integers, slices or arrays, got {item!r}")
    indices = np.where(indices < 0, indices + n, indices)
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise IndexError(f"index {item} is out of bounds for axis {axis} with size {n}")
    return indices

