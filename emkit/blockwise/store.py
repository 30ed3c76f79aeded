"""Chunked inputs and outputs of blockwise jobs, the job folder, and completion markers.

A blockwise job keeps its state in a *job folder* beside its output,
``<folder of OUT>/.<OUT name>[-<key>].emkit-blockwise/``::

    job.json                  the job's parameters; a rerun with others is refused
    output.zarr               the output being written, a Zarr array whose chunks are
                              the blocks (so no two workers ever write one chunk)
    markers/<stage>/<id>.done one file per finished block, written atomically
    ...                       per-stage files (fragment graphs, the merge table)

**Writes.** Workers write only Zarr: each block writes its own chunks of
``output.zarr`` and then, atomically (a temporary file renamed with ``os.replace``),
its completion marker. A block killed half-way has no marker and is redone on the
rerun; its chunks are simply written again. HDF5 cannot take concurrent writers
(h5py has one global lock per process and no multi-process writing without
MPI-parallel HDF5), so an HDF5 output is assembled at the end by one writer, block by
block, from the finished Zarr array; a Zarr output is moved into place with one rename.
Either way the output appears only when complete, and an existing output is replaced
only with ``overwrite``. The job folder is deleted once the output is in place.

**Resume.** A rerun with the same parameters finds the job folder and skips every
block that has a marker (daisy's ``check_function``, with files instead of a database).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from emkit.errors import InputError, OverwriteError
from emkit.io import open_volume, parse_spec
from emkit.io._common import atomic_path, remove, replace_path, sweep_stale_temps, temp_name
from emkit.io._hdf5 import atomic_key
from emkit.io.volume import Volume

JOB_SUFFIX = ".emkit-blockwise"
FORMATS = ("zarr", "hdf5")


# --------------------------------------------------------------------------- inputs


def open_chunked(spec, *, ndim, role: str) -> Volume:
    """Opens a chunked Zarr or HDF5 volume for blockwise reading.

    Args:
        spec: ``store.zarr[:key]`` or ``file.h5:key``.
        ndim: Allowed number of dimensions (an int or a tuple).
        role: What the volume is, for messages (``"--input"``, ``"affinities"``).

    Returns:
        The opened :class:`~emkit.io.Volume`.

    Raises:
        InputError: not Zarr or HDF5, not chunked (a contiguous HDF5 dataset), or of
            the wrong number of dimensions; the message names the file, key and shape.
        MissingDataError: the file or key does not exist (the keys that do are listed).
    """
    parsed = parse_spec(spec)
    if parsed.format not in FORMATS:
        raise InputError(
            f"{role} '{parsed}' is {parsed.format}; blockwise processing reads chunked Zarr "
            "('store.zarr:KEY') or HDF5 ('file.h5:KEY') volumes. Convert it first, e.g. with "
            "emkit.io.write_volume(..., chunks=(64, 64, 64))"
        )
    volume = open_volume(parsed)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if volume.ndim not in allowed:
        axes = {3: "(z, y, x)", 4: "(c, z, y, x)"}
        expected = " or ".join(f"{n}D {axes.get(n, '')}".rstrip() for n in allowed)
        raise InputError(
            f"{role} '{volume.spec}' has shape {volume.shape}; expected a {expected} volume"
        )
    if volume.format == "hdf5":
        import h5py

        with h5py.File(volume.path, "r") as f:
            chunks = f[volume.key].chunks
        if chunks is None:
            raise InputError(
                f"{role} '{volume.spec}' (shape {volume.shape}) is a contiguous HDF5 dataset; "
                "blockwise processing needs a chunked one, else every block reads whole rows "
                "of the file. Rewrite it with chunks, e.g. "
                "emkit.io.write_volume('out.h5:KEY', data, chunks=(64, 64, 64))"
            )
    return volume


# --------------------------------------------------------------------------- the job folder


def job_folder(output) -> Path:
    """The job folder of an output spec (see the module docstring)."""
    parsed = parse_spec(output)
    key = f"-{parsed.key.replace('/', '_')}" if parsed.key else ""
    return parsed.path.parent / f".{parsed.path.name}{key}{JOB_SUFFIX}"


def output_exists(output) -> bool:
    """Whether the output (a Zarr array or store, or an HDF5 dataset) exists."""
    parsed = parse_spec(output)
    if not parsed.path.exists():
        return False
    if parsed.format == "hdf5":
        import h5py

        try:
            with h5py.File(parsed.path, "r") as f:
                return parsed.key in f
        except OSError as exc:
            raise InputError(f"cannot open '{parsed.path}' as HDF5 ({exc})") from exc
    return parsed.key is None or (parsed.path / parsed.key).exists()


def check_output(output, *, overwrite: bool):
    """The parsed output spec, after checking that a blockwise job may write it.

    Raises:
        OverwriteError: the output exists and ``overwrite`` is False.
        InputError: the output is not Zarr or HDF5 (with a key).
    """
    parsed = parse_spec(output)
    if parsed.format not in FORMATS:
        raise InputError(
            f"--output '{parsed}' is {parsed.format}; blockwise jobs write Zarr "
            "('out.zarr[:KEY]') or HDF5 ('out.h5:KEY')"
        )
    if parsed.format == "hdf5" and not parsed.key:
        raise InputError(f"--output '{parsed}' needs a dataset key, e.g. '{parsed.path}:seg'")
    if output_exists(parsed) and not overwrite:
        raise OverwriteError(
            f"output '{parsed}' exists; pass --overwrite (overwrite=True) to replace it"
        )
    return parsed


def start_job(output, params: dict, *, overwrite: bool) -> tuple[Path, bool]:
    """Checks the output (:func:`check_output`) and opens (or resumes) the job folder.

    Args:
        output: The output spec, ``.zarr[:key]`` or ``.h5:key``.
        params: The job's parameters, JSON-serializable; a job folder with other
            parameters is an unfinished different job.
        overwrite: Replace an existing output; also discards an unfinished job with
            other parameters.

    Returns:
        ``(folder, resumed)``.

    Raises:
        OverwriteError: the output exists and ``overwrite`` is False.
        InputError: the output is not Zarr or HDF5 (with a key), or an unfinished job
            with other parameters holds the folder and ``overwrite`` is False.
    """
    parsed = check_output(output, overwrite=overwrite)
    folder = job_folder(parsed)
    params = json.loads(json.dumps(params))  # as it reads back
    record = folder / "job.json"
    if folder.exists():
        try:
            previous = json.loads(record.read_text())
        except (OSError, ValueError):
            previous = None
        if previous == params:
            sweep_stale_temps(folder)
            return folder, True
        if not overwrite:
            raise InputError(
                f"an unfinished blockwise job with other parameters is in '{folder}'; rerun it "
                f"with the same parameters to resume it, or pass --overwrite to start over "
                f"(differences: {_differences(previous, params)})"
            )
        remove(folder)
    folder.mkdir(parents=True)
    write_atomic(record, json.dumps(params, indent=1, sort_keys=True))
    return folder, False


def _differences(old, new) -> str:
    if not isinstance(old, dict):
        return "job.json unreadable"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "none"


def _temp(path: Path) -> Path:
    """A temporary sibling of a job file. Jobs write many; the stale ones a killed job
    left are swept once, when it resumes (:func:`start_job`), not at each write."""
    return path.with_name(temp_name(path.stem, path.suffix))


def write_atomic(path: Path, text: str) -> None:
    """Writes a small text file atomically: a temporary sibling renamed onto ``path``."""
    tmp = _temp(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npz_atomic(path: Path, **arrays) -> None:
    """Saves arrays to ``path`` (.npz) atomically."""
    tmp = _temp(path)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _npz_member(source, key: str):
    """An array of an ``.npz`` (a path or an opened file), positioned at its data;
    yields ``(file, shape, dtype)``."""
    import zipfile

    with ExitStack() as stack:
        archive = (source.zip if isinstance(source, np.lib.npyio.NpzFile)
                   else stack.enter_context(zipfile.ZipFile(source)))
        f = stack.enter_context(archive.open(f"{key}.npy"))
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        if fortran and len(shape) > 1:
            raise ValueError(f"{key} of {source}: Fortran order, expected C order")
        yield f, tuple(shape), dtype


def npz_shape(source, key: str) -> tuple[int, ...]:
    """The shape of one array of an ``.npz`` file, read from its header, not its data.

    Args:
        source: The ``.npz`` file (saved uncompressed, as :func:`save_npz_atomic` does),
            a path or opened with :func:`numpy.load`.
        key: The array's name.

    Returns:
        Its shape.
    """
    with _npz_member(source, key) as (_, shape, _):
        return shape


def npz_rows(source, key: str, step: int = 1 << 16) -> Iterator[np.ndarray]:
    """One array of an ``.npz`` file, ``step`` rows at a time, read straight from the
    file: never the whole array in memory.

    Args:
        source: As for :func:`npz_shape`.
        key: The array's name.
        step: Rows per piece.

    Yields:
        ndarrays of up to ``step`` rows, in order.
    """
    with _npz_member(source, key) as (f, shape, dtype):
        rows = shape[0] if shape else 1
        for start in range(0, rows, step):
            piece = np.empty((min(step, rows - start), *shape[1:]), dtype)
            if piece.nbytes and f.readinto(memoryview(piece).cast("B")) != piece.nbytes:
                raise ValueError(f"{key} of {source}: the file ends early")
            yield piece


def save_npy_atomic(path: Path, array) -> None:
    """Saves one array to ``path`` (.npy, memory-mappable) atomically."""
    tmp = _temp(path)
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- markers


def marker_path(folder: Path, stage: str, block_id: int) -> Path:
    return folder / "markers" / stage / f"{int(block_id)}.done"


def mark_done(folder: Path, stage: str, block_id: int, info: dict | None = None) -> None:
    """Writes the completion marker of a block, atomically, after its output is written."""
    path = marker_path(folder, stage, block_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(info or {}))


def is_done(folder: Path, stage: str, block_id: int) -> bool:
    return marker_path(folder, stage, block_id).exists()


def done_blocks(folder: Path, stage: str) -> set[int]:
    """The ids of the blocks of ``stage`` that have a marker."""
    stage_folder = folder / "markers" / stage
    if not stage_folder.is_dir():
        return set()
    return {int(name[: -len(".done")]) for name in os.listdir(stage_folder)
            if name.endswith(".done") and not name.startswith(".")}


# --------------------------------------------------------------------------- block arrays


def todo_blocks(folder: Path, stage: str, grid) -> list:
    """The blocks of ``grid`` (or any items with an ``id``, e.g. agglomeration chunks)
    without a completion marker for ``stage``, in order."""
    done = done_blocks(folder, stage)
    return [b for b in grid if b.id not in done]


def create_block_array(path: Path, shape, block_shape, dtype, *, channels: int | None = None,
                       attributes: dict | None = None):
    """Creates (or, on resume, reopens) a Zarr array whose chunks are the blocks.

    Args:
        path: The array's store (a folder), e.g. ``<job>/output.zarr``.
        shape: Spatial shape ``(Z, Y, X)``.
        block_shape: The block's write shape, the chunk shape.
        dtype: The array's dtype.
        channels: None for ``(Z, Y, X)``; else the array is channels first
            ``(C, Z, Y, X)`` and a chunk holds all channels of a block.
        attributes: Stored with the array (``resolution``, ...).
    """
    import zarr

    if path.exists():
        return zarr.open_array(store=str(path), mode="r+")
    full = tuple(shape) if channels is None else (int(channels), *shape)
    chunks = tuple(block_shape) if channels is None else (int(channels), *block_shape)
    with atomic_path(path) as tmp:
        zarr.create_array(store=str(tmp), shape=full, chunks=chunks, dtype=dtype,
                          fill_value=0, attributes=attributes or {})
    return zarr.open_array(store=str(path), mode="r+")


def open_block_array(path: Path, mode: str = "r+"):
    import zarr

    return zarr.open_array(store=str(path), mode=mode)


def publish(array_path: Path, output, grid, *, overwrite: bool, voxel_size_nm=None) -> None:
    """Puts a finished block array in place as the job's output.

    Zarr: the array's folder is renamed onto the output (an existing one is moved
    aside first, then deleted). HDF5: the array is copied block by block (one writer,
    one block in memory) into a dataset under a temporary key, which is renamed to the
    output key once complete (:func:`emkit.io.write_volume`'s scheme).

    Args:
        array_path: The finished Zarr array (a root array store).
        output: The output spec.
        grid: The job's :class:`~emkit.blockwise.grid.BlockGrid` (HDF5 copies by block).
        overwrite: Replace an existing output.
        voxel_size_nm: Stored as the ``resolution`` attribute.
    """
    import zarr

    parsed = parse_spec(output)
    source = zarr.open_array(store=str(array_path), mode="r")
    if voxel_size_nm is not None:
        zarr.open_array(store=str(array_path), mode="r+").attrs["resolution"] = [
            float(v) for v in voxel_size_nm
        ]
    if parsed.format == "zarr":
        if parsed.key is None:
            target = parsed.path
        else:
            root = zarr.open_group(store=str(parsed.path), mode="a")
            parent = parsed.key.rpartition("/")[0]
            if parent:
                root.require_group(parent)
            target = parsed.path / parsed.key
        if target.exists() and not overwrite:
            raise OverwriteError(f"output '{parsed}' exists; pass --overwrite to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_path(array_path, target)
        return
    _copy_to_hdf5(source, parsed, grid, overwrite=overwrite, voxel_size_nm=voxel_size_nm)


def _copy_to_hdf5(source, parsed, grid, *, overwrite, voxel_size_nm) -> None:
    import h5py

    channels = source.shape[:-3]
    chunks = (*channels, *grid.block_shape)
    options = {"dtype": source.dtype, "chunks": chunks, "compression": "gzip",
               "compression_opts": 1, "shuffle": True, "fillvalue": 0}

    def fill(f, key):
        dataset = f.create_dataset(key, source.shape, **options)
        if voxel_size_nm is not None:
            dataset.attrs["resolution"] = np.asarray(voxel_size_nm, dtype=np.float64)
        for block in grid:
            box = (*(slice(None),) * len(channels), *block.write)
            dataset[box] = source[box]

    if not parsed.path.exists():
        with atomic_path(parsed.path) as tmp, h5py.File(tmp, "w") as f:
            fill(f, parsed.key)
        return
    with h5py.File(parsed.path, "a") as f:
        if parsed.key in f and not overwrite:
            raise OverwriteError(f"output '{parsed}' exists; pass --overwrite to replace it")
        with atomic_key(f, parsed.key) as tmp_key:
            fill(f, tmp_key)


__all__ = [
    "check_output",
    "create_block_array",
    "done_blocks",
    "is_done",
    "job_folder",
    "mark_done",
    "npz_rows",
    "npz_shape",
    "open_block_array",
    "open_chunked",
    "publish",
    "start_job",
    "todo_blocks",
]
