"""Blockwise segmentation of affinities on Dask: :func:`segment_blockwise`.

Four passes, each resumable by its completion markers (the scheme and why:
:mod:`~emkit.blockwise.stitch`):

==========  ==========  ============================================================
pass        tasks       reads -> writes
==========  ==========  ============================================================
fragments   one/block   affinities (write region + halo) -> fragment chunks, graph
faces       one/block   its first planes and its lower neighbours' last planes -> edges
agglomerate one         every block's graph and edges -> fragment -> segment table
relabel     one/block   fragment chunks and the table -> segmentation chunks
==========  ==========  ============================================================

Fragments and the segmentation are Zarr arrays in the job folder, chunked by block,
so each chunk has one writer; the segmentation is put in place at the end
(:mod:`~emkit.blockwise.store`). Affinities are read channels first ``(C, Z, Y, X)``
as stored (channels 0-2: offsets (1, 0, 0), (0, 1, 0), (0, 0, 1); further channels
are ignored), float in [0, 1] or uint8 read as value / 255.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emkit.blockwise import stitch, store
from emkit.blockwise.cluster import connect, run_blocks
from emkit.blockwise.grid import Block, BlockGrid, block_grid
from emkit.errors import InputError
from emkit.postprocess._checks import check_unit_float
from emkit.postprocess.watershed import (
    DEFAULT_DUST_SIZE,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MERGE_THRESHOLD,
    DEFAULT_SIZE_THRESHOLD,
    check_watershed_options,
)

#: Default block (write region) and halo, (z, y, x) voxels.
DEFAULT_BLOCK = (64, 64, 64)
DEFAULT_HALO = (8, 8, 8)
STAGES = ("fragments", "faces", "agglomerate", "relabel")


@dataclass(frozen=True)
class SegmentJob:
    """What a block task needs (small, pickled with every task)."""

    affs: str
    folder: str
    grid: BlockGrid
    threshold: float
    watershed: dict = field(default_factory=dict)

    @property
    def stride(self) -> int:
        """Id stride of a block: voxels of a full block, more than its fragments."""
        return int(np.prod(self.grid.block_shape))


def segment_blockwise(
    affs,
    output,
    *,
    block_shape=DEFAULT_BLOCK,
    halo=DEFAULT_HALO,
    threshold: float = 0.5,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    size_threshold: int = DEFAULT_SIZE_THRESHOLD,
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
    dust_size: int = DEFAULT_DUST_SIZE,
    workers: int = 1,
    scheduler: str | None = None,
    client=None,
    processes: bool = True,
    memory_limit="auto",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Segments a chunked affinity volume block by block on Dask; resumable.

    The result matches :func:`emkit.postprocess.segment_affinities` on the whole
    volume except near block faces, where fragments differ (the tests measure an
    adapted Rand error below 0.01 between the two on the medulla cube, 64^3 blocks).

    Args:
        affs: Affinities, chunked Zarr or HDF5, ``(C, Z, Y, X)`` channels first.
        output: ``out.zarr[:key]`` or ``out.h5:key``; uint64 ``(Z, Y, X)``, ids
            consecutive from 1, chunked by block.
        block_shape: Write region of a block, an int or ``(z, y, x)``.
        halo: Affinities read around each block for its watershed, an int or
            ``(z, y, x)`` per side; a block must be at least the halo.
        threshold: Agglomeration score threshold (waterz's: merge while the mean
            boundary affinity is above ``1 - threshold``).
        low, high, size_threshold, merge_threshold, dust_size: Watershed options, see
            :func:`~emkit.postprocess.affinity_watershed`; ``dust_size`` applies per
            block.
        workers, scheduler, client, processes, memory_limit: Where to run, see
            :func:`~emkit.blockwise.cluster.connect`.
        overwrite: Replace an existing output (and discard an unfinished job with
            other parameters).
        progress: Show progress bars.

    Returns:
        A summary: ``blocks``, ``run`` (block tasks run now, per pass), ``skipped``,
        ``fragments``, ``segments``, ``seconds``.
    """
    start = time.perf_counter()
    volume = store.open_chunked(affs, ndim=4, role="affinities")
    if volume.shape[0] < 3 or (volume.shape[-1] == 3 and volume.shape[0] != 3):
        raise InputError(
            f"affinities '{volume.spec}' have shape {tuple(volume.shape)}: expected channels "
            "first (c, z, y, x) with at least 3 channels, offsets (1,0,0), (0,1,0), (0,0,1) "
            "(channels last, (z, y, x, 3), is not read)"
        )
    if volume.dtype != np.uint8 and volume.dtype.kind != "f":
        raise InputError(f"affinities '{volume.spec}' have dtype {volume.dtype}; expected "
                         "floats in [0, 1] or uint8 (0-255)")
    threshold = check_unit_float(threshold, "threshold")
    low, high, size_threshold, merge_threshold, dust_size = check_watershed_options(
        low, high, size_threshold, merge_threshold, dust_size)
    spatial = volume.shape[1:]
    halo = (halo,) * 3 if isinstance(halo, int) else tuple(int(h) for h in halo)
    grid = block_grid(spatial, block_shape, context=(halo, halo),
                      name=f"affinities '{volume.spec}'")
    watershed = {"low": low, "high": high, "size_threshold": size_threshold,
                 "merge_threshold": merge_threshold, "dust_size": dust_size}
    store.check_output(output, overwrite=overwrite)  # before any work
    params = {"stage": "segment", "affs": volume.spec, "shape": volume.shape,
              "block_shape": grid.block_shape, "halo": halo, "threshold": threshold,
              "watershed": watershed}
    folder, resumed = store.start_job(output, params, overwrite=overwrite)
    job = SegmentJob(affs=volume.spec, folder=str(folder), grid=grid, threshold=threshold,
                     watershed=watershed)
    store.create_block_array(folder / "fragments.zarr", spatial, grid.block_shape, "uint64")
    store.create_block_array(folder / "output.zarr", spatial, grid.block_shape, "uint64")
    run = {}
    with connect(scheduler, workers=workers, processes=processes, memory_limit=memory_limit,
                 client=client) as dask_client:
        for stage, function in (("fragments", fragments_block), ("faces", faces_block)):
            todo = store.todo_blocks(folder, stage, grid)
            run_blocks(dask_client, function, todo, job, desc=stage, progress=progress)
            run[stage] = len(todo)
        if not (folder / "lut.npy").exists() or not (folder / "table.npz").exists():
            dask_client.submit(agglomerate_job, job, pure=False).result()
            run["agglomerate"] = 1
        else:
            run["agglomerate"] = 0
        todo = store.todo_blocks(folder, "relabel", grid)
        run_blocks(dask_client, relabel_block, todo, job, desc="relabel", progress=progress)
        run["relabel"] = len(todo)
    with np.load(folder / "table.npz") as table:
        segments, fragments = int(table["segments"]), int(table["counts"].sum())
    store.publish(folder / "output.zarr", output, grid, overwrite=overwrite,
                  voxel_size_nm=volume.voxel_size_nm)
    store.remove(folder)
    return {"blocks": len(grid), "run": run, "resumed": resumed,
            "skipped": {k: len(grid) - v for k, v in run.items() if k != "agglomerate"},
            "fragments": fragments, "segments": segments, "block_shape": grid.block_shape,
            "halo": halo, "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- block tasks


def read_affinities(spec: str, box) -> np.ndarray:
    """The 3 nearest-neighbour channels of ``box``, channels last, float32 in [0, 1]."""
    from emkit.io import open_volume

    data = open_volume(spec)[(slice(0, 3), *box)]
    data = np.moveaxis(data, 0, -1)
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data, np.float32) / np.float32(255)
    return np.ascontiguousarray(data, dtype=np.float32)


def fragments_block(block: Block, job: SegmentJob) -> int:
    """Pass 1: the block's fragments (global ids) and the graph of its write region."""
    folder = Path(job.folder)
    if store.is_done(folder, "fragments", block.id):
        return 0
    read = job.grid.read_clipped(block)
    affs = read_affinities(job.affs, read)
    inside = tuple(slice(w.start - r.start, w.stop - r.start) for w, r in zip(block.write, read))
    fragments, graph = stitch.block_fragments(affs, inside, **job.watershed)
    ids = fragments.astype(np.uint64)
    ids[fragments > 0] += np.uint64(block.id * job.stride)
    (folder / "graphs").mkdir(exist_ok=True)
    store.save_npz_atomic(folder / "graphs" / f"{block.id}.npz", **graph)
    store.open_block_array(folder / "fragments.zarr")[block.write] = ids
    store.mark_done(folder, "fragments", block.id, {"fragments": graph["n"]})
    return graph["n"]


def faces_block(block: Block, job: SegmentJob) -> int:
    """Pass 2: the edges across the faces between the block and its lower neighbours."""
    folder = Path(job.folder)
    if store.is_done(folder, "faces", block.id):
        return 0
    fragments = store.open_block_array(folder / "fragments.zarr", mode="r")
    edges = {"u": [], "v": [], "count": [], "total": []}
    for axis, neighbour in job.grid.neighbours_before(block):
        first = list(block.write)
        first[axis] = slice(block.write[axis].start, block.write[axis].start + 1)
        last = list(block.write)
        last[axis] = slice(neighbour.write[axis].stop - 1, neighbour.write[axis].stop)
        affs = read_affinities(job.affs, tuple(first))[..., axis]
        face = stitch.face_edges(
            np.squeeze(fragments[tuple(first)], axis),
            np.squeeze(fragments[tuple(last)], axis),
            np.squeeze(affs, axis),
        )
        for key, parts in edges.items():
            parts.append(face[key])
    merged = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in edges.items()}
    (folder / "faces").mkdir(exist_ok=True)
    store.save_npz_atomic(folder / "faces" / f"{block.id}.npz", **merged)
    store.mark_done(folder, "faces", block.id, {"edges": len(merged["u"])})
    return len(merged["u"])


def agglomerate_job(job: SegmentJob) -> int:
    """Pass 3 (one task): agglomerates the stitched graph; writes ``lut.npz``."""
    folder = Path(job.folder)
    n = len(job.grid)
    counts = np.zeros(n, np.int64)
    inner, faces = [], []
    for b in range(n):
        with np.load(folder / "graphs" / f"{b}.npz") as graph:
            inner.append({k: graph[k] for k in ("u", "v", "count", "total")})
            counts[b] = int(graph["n"])
        with np.load(folder / "faces" / f"{b}.npz") as face:
            faces.append({k: face[k] for k in ("u", "v", "count", "total")})
    offsets, lut = stitch.agglomerate_graph(counts, inner, faces, stride=job.stride,
                                            threshold=job.threshold)
    store.save_npy_atomic(folder / "lut.npy", lut)  # memory-mapped by the relabel tasks
    store.save_npz_atomic(folder / "table.npz", offsets=offsets, counts=counts,
                          segments=int(lut.max(initial=0)))
    return int(lut.max(initial=0))


def relabel_block(block: Block, job: SegmentJob) -> int:
    """Pass 4: the block's fragments through the table, into the segmentation."""
    folder = Path(job.folder)
    if store.is_done(folder, "relabel", block.id):
        return 0
    with np.load(folder / "table.npz") as table:
        offset, count = int(table["offsets"][block.id]), int(table["counts"][block.id])
    lut = np.load(folder / "lut.npy", mmap_mode="r")
    fragments = store.open_block_array(folder / "fragments.zarr", mode="r")[block.write]
    seg = stitch.relabel_block(fragments, block.id, stride=job.stride,
                               lut=lut[offset + 1: offset + count + 1])
    store.open_block_array(folder / "output.zarr")[block.write] = seg
    store.mark_done(folder, "relabel", block.id)
    return block.size


__all__ = ["DEFAULT_BLOCK", "DEFAULT_HALO", "SegmentJob", "segment_blockwise"]
