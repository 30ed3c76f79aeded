"""Prediction outputs on disk, created empty and filled block by block, then renamed.

:func:`emkit.io.write_volume` writes a whole array at once; a prediction larger
than memory is written tile block by tile block instead, so the dataset is
created first (zero-filled: :func:`~emkit.inference.predict_volume` adds each
block into it) and renamed into place only once complete, as ``write_volume``
does: a failed or interrupted prediction leaves nothing behind.

On disk, affinities are channels first ``(C, Z, Y, X)`` and a one-channel map is
``(Z, Y, X)`` (STYLE.md); :func:`create_output` hands back a view with the
in-memory layout ``(Z, Y, X, C)``.

- ``.h5`` / ``.zarr``: chunked datasets, filled in place (out of core).
- ``.npy``: a memory-mapped file (out of core too).
- ``.tif`` and PNG: no partial writes; the prediction is held in memory and
  written with :func:`~emkit.io.write_volume` at the end.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from emkit.errors import InputError, OverwriteError
from emkit.io import _hdf5, _zarr
from emkit.io._common import atomic_path, make_parent
from emkit.io.spec import VolumeSpec, parse_spec
from emkit.io.write import write_volume

OUT_OF_CORE = ("hdf5", "zarr", "npy")


def disk_shape(shape) -> tuple[int, ...]:
    """The on-disk shape of a prediction of in-memory shape ``(..., C)``.

    >>> disk_shape((4, 5, 6, 3)), disk_shape((4, 5, 6, 1))
    ((3, 4, 5, 6), (4, 5, 6))
    """
    *spatial, channels = (int(n) for n in shape)
    return tuple(spatial) if channels == 1 else (channels, *spatial)


def check_output(spec, *, overwrite: bool = False) -> VolumeSpec:
    """Raises :class:`OverwriteError` early when the output exists and ``overwrite`` is False.

    Args:
        spec: the output volume spec (``path`` or ``path:key``).
        overwrite: allow replacing an existing output.

    Returns:
        The parsed spec.
    """
    parsed = parse_spec(spec)
    if overwrite or not parsed.path.exists():
        return parsed
    if parsed.format == "hdf5":
        if parsed.key is None:
            raise InputError(
                f"writing HDF5 needs a dataset key, e.g. '{parsed.path}:volumes/pred'; "
                f"got '{parsed.path}'"
            )
        import h5py

        try:
            with h5py.File(parsed.path, "r") as f:
                exists = parsed.key in f
        except OSError as exc:
            raise InputError(f"cannot open '{parsed.path}' as HDF5 ({exc})") from exc
        where = f"dataset '{parsed}'"
    elif parsed.format == "zarr" and parsed.key is not None:
        exists = (parsed.path / parsed.key).exists()
        where = f"array '{parsed}'"
    else:
        exists, where = True, f"'{parsed.path}'"
    if exists:
        raise OverwriteError(f"{where} exists; pass --overwrite (overwrite=True) to replace it")
    return parsed


@contextmanager
def create_output(
    spec,
    shape,
    *,
    voxel_size_nm=None,
    overwrite: bool = False,
    chunks=None,
) -> Iterator:
    """Creates a zero-filled float32 prediction on disk and renames it into place at the end.

    Args:
        spec: ``out.h5:volumes/pred``, ``out.zarr[:key]``, ``out.npy``,
            ``out.tif`` or a PNG folder (see :mod:`emkit.io.spec`).
        shape: In-memory shape ``(Z, Y, X, C)`` (or ``(Y, X, C)``).
        voxel_size_nm: Stored as the ``resolution`` attribute (HDF5, Zarr, TIFF).
        overwrite: Replace an existing output; without it an existing one
            raises :class:`OverwriteError`.
        chunks: On-disk chunk shape (default: 1 channel x up to 16 x 128 x 128).

    Yields:
        An array-like of shape ``shape`` (ndarray for ``.npy``, TIFF and PNG)
        that takes ``view[box] = block`` and ``view[box]`` with slices. It is
        complete on disk only after the ``with`` block ends without error.
    """
    parsed = check_output(spec, overwrite=overwrite)
    make_parent(parsed.path)
    shape = tuple(int(n) for n in shape)
    on_disk = disk_shape(shape)
    if chunks is None:
        limits = (16, 128, 128)[-(len(shape) - 1):]
        chunks = tuple(min(n, c) for n, c in zip(shape[:-1], limits))
        chunks = chunks if shape[-1] == 1 else (1, *chunks)
    if parsed.format == "hdf5":
        with _hdf5_dataset(parsed, on_disk, voxel_size_nm, overwrite, chunks) as dataset:
            yield ChannelsLast(dataset, shape)
    elif parsed.format == "zarr":
        with _zarr_array(parsed, on_disk, voxel_size_nm, overwrite, chunks) as array:
            yield ChannelsLast(array, shape)
    elif parsed.format == "npy":
        if voxel_size_nm is not None:
            warnings.warn(
                f"'{parsed.path}' (npy) cannot store voxel_size_nm; it is not saved. Use .tif, "
                ".h5 or .zarr to keep it.",
                stacklevel=3,
            )
        with atomic_path(parsed.path) as tmp:
            memmap = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=on_disk)
            yield _channels_last_ndarray(memmap, shape)
            memmap.flush()
            del memmap
    else:
        array = np.zeros(shape, np.float32)
        yield array
        write_volume(
            parsed, to_disk_layout(array), voxel_size_nm=voxel_size_nm, overwrite=overwrite
        )


def to_disk_layout(pred: np.ndarray) -> np.ndarray:
    """``(..., C)`` to channels first ``(C, ...)``, or ``(...)`` for one channel (a view)."""
    return pred[..., 0] if pred.shape[-1] == 1 else np.moveaxis(pred, -1, 0)


class ChannelsLast:
    """A channels-first (or channel-less) on-disk array seen as ``(..., C)``.

    Indexing takes a tuple of slices over the spatial axes and, optionally, the
    channel axis (a full slice).
    """

    def __init__(self, array, shape):
        self.array = array
        self.shape = tuple(shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def _box(self, box):
        box = box if isinstance(box, tuple) else (box,)
        spatial = box[: self.ndim - 1]
        if len(box) == self.ndim and box[-1] != slice(None):
            raise IndexError("ChannelsLast views take all channels at once")
        if self.shape[-1] == 1:
            return spatial
        return (slice(None), *spatial)

    def __getitem__(self, box):
        data = np.asarray(self.array[self._box(box)])
        return data[..., None] if self.shape[-1] == 1 else np.moveaxis(data, 0, -1)

    def __setitem__(self, box, value):
        value = np.asarray(value, dtype=self.dtype)
        self.array[self._box(box)] = to_disk_layout(value)


def _channels_last_ndarray(array: np.ndarray, shape) -> np.ndarray:
    return array[..., None] if shape[-1] == 1 else np.moveaxis(array, 0, -1)


@contextmanager
def _hdf5_dataset(parsed: VolumeSpec, shape, voxel_size_nm, overwrite, chunks):
    import h5py

    if parsed.key is None:
        raise InputError(
            f"writing HDF5 needs a dataset key, e.g. '{parsed.path}:volumes/pred'; got '{parsed.path}'"
        )
    options = {"dtype": np.float32, "chunks": tuple(chunks), "fillvalue": 0.0,
               "compression": "gzip", "compression_opts": 1, "shuffle": True}
    if not parsed.path.exists():
        with atomic_path(parsed.path) as tmp, h5py.File(tmp, "w") as f:
            dataset = f.create_dataset(parsed.key, shape, **options)
            _set_resolution(dataset.attrs, voxel_size_nm)
            yield dataset
        return
    with h5py.File(parsed.path, "a") as f:
        parts = parsed.key.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if isinstance(f.get(ancestor), h5py.Dataset):
                raise InputError(
                    f"cannot write '{parsed}': '{ancestor}' is a dataset, not a group"
                )
        existing = f.get(parsed.key)
        if existing is not None and not isinstance(existing, h5py.Dataset):
            raise InputError(f"'{parsed}' is a group, not a dataset; choose another key")
        if existing is not None and not overwrite:
            raise OverwriteError(
                f"dataset '{parsed}' exists; pass --overwrite (overwrite=True) to replace it"
            )
        with _hdf5.atomic_key(f, parsed.key) as tmp_key:
            dataset = f.create_dataset(tmp_key, shape, **options)
            _set_resolution(dataset.attrs, voxel_size_nm)
            yield dataset


@contextmanager
def _zarr_array(parsed: VolumeSpec, shape, voxel_size_nm, overwrite, chunks):
    import zarr

    attributes = {} if voxel_size_nm is None else {"resolution": [float(v) for v in voxel_size_nm]}
    options = {"shape": shape, "dtype": "float32", "chunks": tuple(chunks), "fill_value": 0.0,
               "attributes": attributes}
    path, key = parsed.path, parsed.key
    if not path.exists() or key is None:
        from emkit.io._zarr import check_no_named_arrays

        check_no_named_arrays(path)
        with atomic_path(path) as tmp:
            yield zarr.create_array(store=str(tmp), name=key, **options)
        return
    with _zarr.atomic_key(path, key) as tmp_key:
        yield zarr.create_array(store=str(path), name=tmp_key, **options)


def _set_resolution(attrs, voxel_size_nm) -> None:
    if voxel_size_nm is not None:
        attrs["resolution"] = np.asarray(voxel_size_nm, dtype=np.float64)


__all__ = ["ChannelsLast", "check_output", "create_output", "disk_shape", "to_disk_layout"]
