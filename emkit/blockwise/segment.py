"""Blockwise segmentation of affinities on Dask: :func:`segment_blockwise`.

Passes, each resumable by its completion markers (the scheme and why:
:mod:`~emkit.blockwise.stitch` and :mod:`~emkit.blockwise.hierarchy`):

============  ===============  ===========================================================
pass          tasks            reads -> writes
============  ===============  ===========================================================
fragments     one/block        affinities (write region + halo) -> fragment chunks, graph
faces         one/block        its first planes and its lower neighbours' last planes
                               -> face edges
agglomerate   one/chunk/level  children's frozen graphs and the faces between them ->
                               merges, the chunk's frozen graph (levels 0 .. top)
tables        one              every merge, fragment sizes -> one table per threshold
relabel       one/block and    fragment chunks and a table -> segmentation chunks
              threshold
============  ===============  ===========================================================

Fragments and segmentations are Zarr arrays in the job folder, chunked by block,
so each chunk has one writer; the segmentations are put in place at the end
(:mod:`~emkit.blockwise.store`). Affinities are read channels first ``(C, Z, Y, X)``
as stored (channels 0-2: offsets (1, 0, 0), (0, 1, 0), (0, 0, 1); further channels
are ignored), float in [0, 1] or uint8 read as value / 255.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emkit.blockwise import cluster, hierarchy, stitch, store
from emkit.blockwise.cluster import connect, run_blocks
from emkit.blockwise.grid import Block, BlockGrid, block_grid
from emkit.errors import InputError
from emkit.postprocess.options import (
    DEFAULTS,
    SegmentOptions,
    check_stored_affinities,
    takes_options,
    threshold_outputs,
)

#: Default block (write region) and halo, (z, y, x) voxels.
DEFAULT_BLOCK = (64, 64, 64)
DEFAULT_HALO = (8, 8, 8)


@dataclass(frozen=True)
class SegmentJob:
    """What a block or chunk task needs (small, pickled with every task)."""

    affs: str
    folder: str
    grid: BlockGrid
    options: SegmentOptions = DEFAULTS

    @property
    def stride(self) -> int:
        """Id stride of a block: voxels of a full block, more than its fragments."""
        return int(np.prod(self.grid.block_shape))


@takes_options
def segment_blockwise(
    affs,
    output,
    *,
    block_shape=DEFAULT_BLOCK,
    halo=DEFAULT_HALO,
    threshold: float | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    client=None,
    processes: bool = True,
    memory_limit="auto",
    overwrite: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Segments a chunked affinity volume block by block on Dask; resumable.

    The result matches :func:`emkit.postprocess.segment_affinities` on the whole
    volume except near block faces, where fragments differ (the tests measure an
    adapted Rand error below 0.01 between the two on the medulla cube, 64^3 blocks,
    at several thresholds and with quantile scoring). The agglomeration is the
    whole-volume one, done hierarchically (:mod:`~emkit.blockwise.hierarchy`): no task
    holds the region graph of the whole volume.

    ``dust_size`` removes whole objects: after agglomeration, at each threshold, the
    segments of fewer voxels (summed over their fragments in all blocks) become 0.
    In memory, :func:`~emkit.postprocess.segment_affinities` removes the watershed's
    small *fragments* before agglomeration instead (a fragment is known whole there,
    but a block sees only its part of one). Both remove the small isolated objects;
    they differ on small fragments that agglomeration would join to a larger object
    (in memory they become holes, 0, here they stay in it), and the in-memory graph
    loses the removed fragments' edges. Equal when ``dust_size=0``, the default.

    Args:
        affs: Affinities, chunked Zarr or HDF5, ``(C, Z, Y, X)`` channels first.
        output: ``out.zarr[:key]`` or ``out.h5:key``; uint64 ``(Z, Y, X)``, ids
            consecutive from 1, chunked by block. With several thresholds it holds
            ``{threshold}``, replaced by each (``f"{t:g}"``): ``seg.zarr:seg/{threshold}``.
        block_shape: Write region of a block, an int or ``(z, y, x)``.
        halo: Affinities read around each block for its watershed, an int or
            ``(z, y, x)`` per side; a block must be at least the halo.
        threshold: One threshold, the same as ``thresholds=(threshold,)`` (older name).
        workers, scheduler, client, processes, memory_limit: Where to run, see
            :func:`~emkit.blockwise.cluster.connect`.
        overwrite: Replace existing outputs (and discard an unfinished job with
            other parameters).
        progress: Show progress bars.
        **options: The options of :class:`~emkit.postprocess.options.SegmentOptions`
            by name, with its defaults: ``thresholds``, ``scoring``, ``quantile``,
            ``bins``, ``low``, ``high``, ``size_threshold``, ``merge_threshold``,
            ``dust_size`` (whole objects, see above).

    Returns:
        A summary: ``blocks``, ``run`` (tasks run now, per pass), ``skipped``,
        ``resumed``, ``fragments``, ``outputs`` and ``segments`` (one per threshold),
        ``edges`` (of the stitched region graph), ``largest_chunk_edges`` (the most
        edges one agglomeration task held), ``levels``, ``block_shape``, ``halo``,
        ``seconds``.

    Raises:
        InputError: a bad input, option or output spec, or an unfinished job with
            other parameters.
        OverwriteError: an output exists and ``overwrite`` is False.
        BlockFailed: a task failed; finished tasks are kept for a rerun.
    """
    start = time.perf_counter()
    volume = store.open_chunked(affs, ndim=4, role="affinities")
    check_stored_affinities(volume.shape, f"affinities '{volume.spec}'")
    if volume.dtype != np.uint8 and volume.dtype.kind != "f":
        raise InputError(f"affinities '{volume.spec}' have dtype {volume.dtype}; expected "
                         "floats in [0, 1] or uint8 (0-255)")
    if threshold is not None:
        if "thresholds" in options:
            raise InputError(f"give threshold or thresholds, not both (got threshold="
                             f"{threshold!r}, thresholds={options['thresholds']!r})")
        options["thresholds"] = (threshold,)
    options = SegmentOptions.checked(**options)
    outputs = threshold_outputs(output, options.thresholds, name="output")
    spatial = volume.shape[1:]
    halo = (halo,) * 3 if isinstance(halo, int) else tuple(int(h) for h in halo)
    grid = block_grid(spatial, block_shape, context=(halo, halo),
                      name=f"affinities '{volume.spec}'")
    for spec in outputs:  # before any work
        store.check_output(spec, overwrite=overwrite)
    params = {"stage": "segment", "affs": volume.spec, "shape": volume.shape,
              "block_shape": grid.block_shape, "halo": halo, "options": options.to_dict(),
              "outputs": [str(spec) for spec in outputs]}
    folder, resumed = store.start_job(output, params, overwrite=overwrite)
    job = SegmentJob(affs=volume.spec, folder=str(folder), grid=grid, options=options)
    store.create_block_array(folder / "fragments.zarr", spatial, grid.block_shape, "uint64")
    arrays = [folder / f"output-{i}.zarr" for i in range(len(outputs))]
    for array in arrays:
        store.create_block_array(array, spatial, grid.block_shape, "uint64")
    run = {"fragments": 0, "faces": 0, "agglomerate": 0, "tables": 0, "relabel": 0}
    levels = hierarchy.top_level(grid.shape) + 1
    with connect(scheduler, workers=workers, processes=processes, memory_limit=memory_limit,
                 client=client) as dask_client:
        for stage, function in (("fragments", fragments_block), ("faces", faces_block)):
            todo = store.todo_blocks(folder, stage, grid)
            run_blocks(dask_client, function, todo, job, desc=stage, progress=progress)
            run[stage] = len(todo)
        for level in range(levels):
            todo = store.todo_blocks(folder, f"agglomerate-{level}",
                                     hierarchy.chunks(grid, level))
            run_blocks(dask_client, agglomerate_task, todo, job, desc=f"agglomerate-{level}",
                       progress=progress)
            run["agglomerate"] += len(todo)
        if not (folder / "tables.npz").exists():
            dask_client.submit(tables_job, job, pure=False).result()
            run["tables"] = 1
        for i, t in enumerate(options.thresholds):
            todo = store.todo_blocks(folder, f"relabel-{i}", grid)
            run_blocks(dask_client, relabel_block, todo, job, i, desc=f"relabel-{t:g}",
                       progress=progress)
            run["relabel"] += len(todo)
    with np.load(folder / "tables.npz") as tables:
        summary = {k: tables[k].tolist() for k in ("segments", "edges", "largest_chunk_edges")}
        fragments = int(tables["counts"].sum())
    for array, spec in zip(arrays, outputs):
        store.publish(array, spec, grid, overwrite=overwrite,
                      voxel_size_nm=volume.voxel_size_nm)
    store.remove(folder)
    skipped = {"fragments": len(grid) - run["fragments"], "faces": len(grid) - run["faces"],
               "relabel": len(grid) * len(outputs) - run["relabel"]}
    return {"blocks": len(grid), "run": run, "resumed": resumed, "skipped": skipped,
            "fragments": fragments, "outputs": [str(spec) for spec in outputs],
            "thresholds": list(options.thresholds), **summary, "levels": levels,
            "block_shape": grid.block_shape, "halo": halo,
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- block tasks


def read_affinities(spec: str, box) -> np.ndarray:
    """The 3 nearest-neighbour channels of a box of the affinities.

    Args:
        spec: The affinities, ``(C, Z, Y, X)`` on disk.
        box: Spatial slices ``(z, y, x)``.

    Returns:
        ndarray of the box's shape + (3,), channels last, float32 in [0, 1].
    """
    from emkit.io import open_volume

    data = open_volume(spec)[(slice(0, 3), *box)]
    data = np.moveaxis(data, 0, -1)
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data, np.float32) / np.float32(255)
    return np.ascontiguousarray(data, dtype=np.float32)


def fragments_block(block: Block, job: SegmentJob) -> int:
    """Pass 1: the block's fragments (global ids) and the graph of its write region.

    The watershed removes no dust here: dust is removed from whole objects, after
    agglomeration (:func:`tables_job`).

    Args:
        block: The :class:`~emkit.blockwise.grid.Block`.
        job: The :class:`SegmentJob`.

    Returns:
        The block's fragments (0 when the block was already done).
    """
    folder = Path(job.folder)
    if store.is_done(folder, "fragments", block.id):
        return 0
    read = job.grid.read_clipped(block)
    affs = read_affinities(job.affs, read)
    inside = tuple(slice(w.start - r.start, w.stop - r.start) for w, r in zip(block.write, read))
    fragments, graph = stitch.block_fragments(
        affs, inside, bins=job.options.histogram_bins, **{**job.options.watershed, "dust_size": 0})
    ids = fragments.astype(np.uint64)
    ids[fragments > 0] += np.uint64(block.id * job.stride)
    (folder / "graphs").mkdir(exist_ok=True)
    store.save_npz_atomic(folder / "graphs" / f"{block.id}.npz", **graph)
    store.open_block_array(folder / "fragments.zarr")[block.write] = ids
    store.mark_done(folder, "fragments", block.id, {"fragments": graph["n"]})
    return graph["n"]


def faces_block(block: Block, job: SegmentJob) -> int:
    """Pass 2: the edges across the faces between the block and its lower neighbours,
    and the fragment pieces there that either block's watershed joined.

    Args:
        block: The :class:`~emkit.blockwise.grid.Block`.
        job: The :class:`SegmentJob`.

    Returns:
        The face edges (0 when the block was already done).
    """
    folder = Path(job.folder)
    if store.is_done(folder, "faces", block.id):
        return 0
    fragments = store.open_block_array(folder / "fragments.zarr", mode="r")
    bins = job.options.histogram_bins
    parts = []
    for axis, neighbour in job.grid.neighbours_before(block):
        first = list(block.write)
        first[axis] = slice(block.write[axis].start, block.write[axis].start + 1)
        last = list(block.write)
        last[axis] = slice(neighbour.write[axis].stop - 1, neighbour.write[axis].stop)
        affs = read_affinities(job.affs, tuple(first))[..., axis]
        with np.load(folder / "graphs" / f"{block.id}.npz") as mine, \
                np.load(folder / "graphs" / f"{neighbour.id}.npz") as theirs:
            joined = mine[f"same_lower_{axis}"] | theirs[f"same_upper_{axis}"]
        face = stitch.face_edges(
            np.squeeze(fragments[tuple(first)], axis),
            np.squeeze(fragments[tuple(last)], axis),
            np.squeeze(affs, axis),
            bins=bins,
            joined=joined,
        )
        face["axis"] = np.full(len(face["u"]), axis, np.int8)
        face["joined_axis"] = np.full(len(face["joined_u"]), axis, np.int8)
        parts.append(face)
    if not parts:
        nothing = np.zeros((0, 0))
        parts.append(stitch.face_edges(nothing, nothing, nothing, bins=bins))
        parts[0]["axis"] = parts[0]["joined_axis"] = np.zeros(0, np.int8)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    (folder / "faces").mkdir(exist_ok=True)
    store.save_npz_atomic(folder / "faces" / f"{block.id}.npz", **merged)
    store.mark_done(folder, "faces", block.id, {"edges": len(merged["u"]),
                                                "joined": len(merged["joined_u"])})
    return len(merged["u"])


def agglomerate_task(chunk: hierarchy.Chunk, job: SegmentJob) -> int:
    """Pass 3, one level at a time: agglomerates one chunk, freezing its boundary.

    Level 0 reads the block's graph; a higher level reads its children's frozen graphs
    and the face edges between them (:mod:`~emkit.blockwise.hierarchy`). Writes the
    chunk's merges and frozen graph to ``agglomerate/<level>/<id>.npz``. First, from
    the sizes of what it will read, it checks that its memory
    (:func:`~emkit.blockwise.hierarchy.chunk_memory`) fits the worker's memory limit.

    Args:
        chunk: The :class:`~emkit.blockwise.hierarchy.Chunk`.
        job: The :class:`SegmentJob`.

    Returns:
        The edges the chunk agglomerated (0 when it was already done).

    Raises:
        InputError: the chunk needs more memory than the worker's limit leaves.
    """
    folder = Path(job.folder)
    stage = f"agglomerate-{chunk.level}"
    if store.is_done(folder, stage, chunk.id):
        return 0
    options = job.options
    regions, edges = chunk_size(chunk, job)
    limit = cluster.worker_memory_limit()
    if limit is not None:
        import psutil

        hierarchy.check_memory(chunk, regions, edges, options.histogram_bins,
                               memory_limit=limit[0], fraction=limit[1],
                               in_use=psutil.Process().memory_info().rss)
    result = hierarchy.agglomerate_chunk(  # the graph is not kept here: freed as it is used
        chunk_graph(chunk, job), chunk, scoring=options.scoring, quantile=options.quantile,
        stop=max(options.thresholds))
    path = _chunk_file(folder, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.save_npz_atomic(path, **result)
    store.mark_done(folder, stage, chunk.id, {"edges": int(result["edges_in"]),
                                              "merges": len(result["a"]),
                                              "frozen_edges": len(result["u"])})
    return int(result["edges_in"])


def chunk_graph(chunk: hierarchy.Chunk, job: SegmentJob) -> dict:
    """The graph that one chunk agglomerates, read from the job folder.

    Args:
        chunk: The :class:`~emkit.blockwise.hierarchy.Chunk`.
        job: The :class:`SegmentJob`.

    Returns:
        The graph layout of :func:`~emkit.blockwise.hierarchy.agglomerate_chunk`: the
        block's graph at level 0, else the children's frozen graphs joined along the
        faces between them (:func:`~emkit.blockwise.hierarchy.joined_graph`).
    """
    folder = Path(job.folder)
    if chunk.level == 0:
        block = job.grid.block(chunk.index)
        with np.load(folder / "graphs" / f"{block.id}.npz") as graph:
            return hierarchy.block_graph(graph, block, job.grid.shape, job.stride)
    faces = _inner_face_edges(chunk, job)
    with ExitStack() as opened:  # read one array at a time by joined_graph
        parts = [opened.enter_context(np.load(_chunk_file(folder, child)))
                 for child in hierarchy.children(chunk, job.grid)]
        return hierarchy.joined_graph(parts, faces, job.options.histogram_bins)


def _inner_face_edges(chunk: hierarchy.Chunk, job: SegmentJob) -> list[dict]:
    """The face edges a chunk adds, one dict per inner face (in the order of
    :func:`~emkit.blockwise.hierarchy.inner_faces`); each face file is read once."""
    folder = Path(job.folder)
    inner = hierarchy.inner_faces(chunk, job.grid)
    uses = Counter(block_id for block_id, _ in inner)
    opened, faces = {}, []
    for block_id, axis in inner:
        if block_id not in opened:
            with np.load(folder / "faces" / f"{block_id}.npz") as face:
                opened[block_id] = {k: face[k] for k in face.files}
        face = opened[block_id]
        rows, joined = face["axis"] == axis, face["joined_axis"] == axis
        faces.append({k: face[k][rows] for k in ("u", "v", "count", "total")}
                     | {"hist": face["hist"][rows] if job.options.histogram_bins
                        else face["hist"],
                        "joined_u": face["joined_u"][joined],
                        "joined_v": face["joined_v"][joined]})
        uses[block_id] -= 1
        if not uses[block_id]:
            del opened[block_id]
    return faces


def chunk_size(chunk: hierarchy.Chunk, job: SegmentJob) -> tuple[int, int]:
    """The regions and edges (parallel ones counted apart) a chunk's graph will hold,
    read from the headers of its files, not their data (but for the faces' axes, a
    byte per face edge).

    Args:
        chunk: The :class:`~emkit.blockwise.hierarchy.Chunk`.
        job: The :class:`SegmentJob`.

    Returns:
        ``(regions, edges)``.
    """
    folder = Path(job.folder)
    if chunk.level == 0:
        path = folder / "graphs" / f"{job.grid.block(chunk.index).id}.npz"
        with np.load(path) as graph:
            return int(graph["n"]), store.npz_shape(path, "u")[0]
    regions = edges = 0
    for child in hierarchy.children(chunk, job.grid):
        path = _chunk_file(folder, child)
        regions += store.npz_shape(path, "nodes")[0]
        edges += store.npz_shape(path, "u")[0]
    for block_id, axis in hierarchy.inner_faces(chunk, job.grid):
        with np.load(folder / "faces" / f"{block_id}.npz") as face:
            edges += int(np.count_nonzero(face["axis"] == axis))
    return regions, edges


def _chunk_file(folder: Path, chunk: hierarchy.Chunk) -> Path:
    return folder / "agglomerate" / str(chunk.level) / f"{chunk.id}.npz"


def tables_job(job: SegmentJob) -> list[int]:
    """Pass 4 (one task): every chunk's merges -> one table per threshold, dust removed.

    Writes ``lut-<i>.npy`` (fragment node -> segment id, memory-mapped by the relabel
    tasks) and ``tables.npz`` (the block offsets and counts, the segments per
    threshold, and the graph's size).

    Memory: per fragment, 8 bytes of each table and, with dust, 8 of its size; per
    merge (at most one per fragment) 16 bytes, sorted one array at a time; and the
    work of :func:`~emkit.postprocess.agglomeration.threshold_luts`, 8 bytes per
    fragment; never the region graph.

    Args:
        job: The :class:`SegmentJob`.

    Returns:
        The segments at each threshold.
    """
    folder = Path(job.folder)
    grid = job.grid
    options = job.options
    counts = np.zeros(len(grid), np.int64)
    edges = 0
    for b in range(len(grid)):
        with np.load(folder / "graphs" / f"{b}.npz") as graph:
            counts[b] = int(graph["n"])
        edges += store.npz_shape(folder / "graphs" / f"{b}.npz", "u")[0]
        edges += store.npz_shape(folder / "faces" / f"{b}.npz", "u")[0]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_nodes = int(counts.sum()) + 1
    sizes = None
    if options.dust_size:
        sizes = np.zeros(n_nodes, np.int64)  # node 0, the background, stays 0
        for b in range(len(grid)):
            with np.load(folder / "graphs" / f"{b}.npz") as graph:
                sizes[offsets[b] + 1: offsets[b] + counts[b] + 1] = graph["sizes"]
    files = [_chunk_file(folder, chunk) for level in range(hierarchy.top_level(grid.shape) + 1)
             for chunk in hierarchy.chunks(grid, level)]
    merges = sum(store.npz_shape(path, "score")[0] for path in files)
    node = np.int32 if n_nodes < 2**31 else np.int64
    a, b = np.empty(merges, node), np.empty(merges, node)
    score = np.empty(merges, np.float64)
    at, largest = 0, 0
    for path in files:
        with np.load(path) as chunk:
            k = len(chunk["score"])
            a[at:at + k] = stitch.global_to_node(chunk["a"], offsets, job.stride)
            b[at:at + k] = stitch.global_to_node(chunk["b"], offsets, job.stride)
            score[at:at + k] = chunk["score"]
            largest = max(largest, int(chunk["edges_in"]))
        at += k
    order = np.argsort(score, kind="stable")  # sorted here, one array at a time
    a = a[order]
    b = b[order]
    score = score[order]
    del order
    tables = hierarchy.threshold_tables(a, b, score, n_nodes, options.thresholds, sizes,
                                        options.dust_size)
    segments = [int(t.max(initial=0)) for t in tables]
    for i, table in enumerate(tables):
        store.save_npy_atomic(folder / f"lut-{i}.npy", table)
    store.save_npz_atomic(folder / "tables.npz", offsets=offsets, counts=counts,
                          segments=np.asarray(segments), edges=edges,
                          largest_chunk_edges=largest)
    return segments


def relabel_block(block: Block, job: SegmentJob, index: int) -> int:
    """Pass 5: the block's fragments through the table of one threshold.

    Args:
        block: The :class:`~emkit.blockwise.grid.Block`.
        job: The :class:`SegmentJob`.
        index: The threshold's position in ``job.options.thresholds``.

    Returns:
        The voxels written (0 when the block was already done).
    """
    folder = Path(job.folder)
    stage = f"relabel-{index}"
    if store.is_done(folder, stage, block.id):
        return 0
    with np.load(folder / "tables.npz") as table:
        offset, count = int(table["offsets"][block.id]), int(table["counts"][block.id])
    lut = np.load(folder / f"lut-{index}.npy", mmap_mode="r")
    fragments = store.open_block_array(folder / "fragments.zarr", mode="r")[block.write]
    seg = stitch.relabel_block(fragments, block.id, stride=job.stride,
                               lut=lut[offset + 1: offset + count + 1])
    store.open_block_array(folder / f"output-{index}.zarr")[block.write] = seg
    store.mark_done(folder, stage, block.id)
    return block.size


__all__ = ["DEFAULT_BLOCK", "DEFAULT_HALO", "SegmentJob", "segment_blockwise"]
