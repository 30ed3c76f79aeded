"""Blockwise prediction and segmentation on Dask: memory, throughput, overhead (issue 9).

    nice -n 5 python benchmarks/blockwise.py [--cap-mib 1536] [--shape 128,2048,2048]
        [--workers 1,2] [--stages predict,segment] [--no-overhead] [--try-small]
    nice -n 5 python benchmarks/blockwise.py --graph-memory "64,512,512;128,1024,1024" \
        --block 64,64,64 --threshold 0.5
    nice -n 5 python benchmarks/blockwise.py --top-graph 80,128,128 --threshold 0.5 [--bins 64]

1. A synthetic raw volume is written chunk by chunk to Zarr (never whole in memory):
   box-shaped cells of constant intensity with noise, so that a fixed "affinity model"
   (emkit.inference.testing.affinity_model: 1 - |x(v) - x(v - d)|, a valid 3D
   convnet, context 2) predicts realistic affinities.
2. The memory cap: every Dask worker gets ``memory_limit = cap`` and the benchmark
   samples (psutil, every 0.1 s) the resident memory of itself and all its child
   processes; it checks that no worker exceeds the cap and reports the peak of the
   sum. The affinity volume (float32, 3 channels) is at least 4x the cap.
3. ``predict_blockwise`` then ``segment_blockwise`` run with 1 and with 2 local
   worker processes; throughput is Mvoxel/s of the volume.
4. Overhead: on a volume that fits, blockwise (1 worker) against whole-volume
   ``predict_volume`` and ``segment_affinities`` in one process.

``--graph-memory Z,Y,X[;Z,Y,X...]`` measures instead the memory of the agglomeration
of ``segment_blockwise`` against the size of the region graph, on synthetic
affinities (the box cells below, smooth noise) written chunk by chunk: for each shape
it segments once, then runs in fresh processes, each measuring its own peak resident
memory (below) above what it held before: (a) the agglomeration of the whole
stitched graph in one process, as ``segment_blockwise`` did before it was
hierarchical, (b) every hierarchical chunk task in turn, as one worker would (its
peak is the largest task's; with the regions and edges it read, and the most any task's
peak was of ``hierarchy.chunk_memory``'s estimate), and (c) the task that joins the
merges into the tables. The peak is Linux's high-water mark of resident memory
(``VmHWM``, reset through ``/proc/self/clear_refs``; psutil samples every 5 ms
elsewhere, which miss what a numba loop allocates, as it holds the GIL), and the
processes run with a Dask worker's environment (``distributed.nanny.pre-spawn-environ``: glibc
gives freed memory back).

``--top-graph Z,Y,X`` measures the top chunk task alone, and the tables step, on a
synthetic job (:func:`write_top_job`): a lattice of Z x Y x X regions, every one frozen
in the 2 x 2 blocks below the top (as frozen regions propagate on real data), about 5
edges per region; ``--bins`` for quantile scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

NN = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


class PeakMemory:
    """Samples the RSS of this process and its children; keeps the peaks."""

    def __init__(self, interval=0.1):
        import psutil

        self.me = psutil.Process()
        self.interval, self.total, self.child = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total, child = 0, 0
            try:
                total = self.me.memory_info().rss
                for p in self.me.children(recursive=True):
                    try:
                        rss = p.memory_info().rss
                    except psutil.Error:
                        continue
                    total += rss
                    child = max(child, rss)
            except psutil.Error:
                pass
            self.total, self.child = max(self.total, total), max(self.child, child)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cell_labels(z0, y0, x0, shape, seed=0):
    """Box cells 12 x 48 x 40 voxels (rows shifted per slab): a key per cell, int64."""
    z, y, x = np.meshgrid(*(np.arange(s, s + n) for s, n in zip((z0, y0, x0), shape)),
                          indexing="ij")
    cz = z // 12
    cy = (y + 17 * cz) // 48
    cx = (x + 23 * cy) // 40
    return (cz * 73856093) ^ (cy * 19349663) ^ (cx * 83492791) ^ seed


def cell_raw(z0, y0, x0, shape, seed=0):
    """The box cells of :func:`cell_labels`, constant intensity + noise, uint8."""
    intensity = 40 + (cell_labels(z0, y0, x0, shape, seed) % 176)
    noise = np.random.default_rng([z0, y0, x0, seed]).normal(0, 3, shape)
    return np.clip(intensity + noise, 0, 255).astype(np.uint8)


def write_raw(path, shape, chunks=(64, 128, 128)):
    import zarr

    array = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype="uint8")
    for z in range(0, shape[0], chunks[0]):
        for y in range(0, shape[1], chunks[1]):
            for x in range(0, shape[2], chunks[2]):
                n = tuple(min(c, s - o) for c, s, o in zip(chunks, shape, (z, y, x)))
                array[z:z + n[0], y:y + n[1], x:x + n[2]] = cell_raw(z, y, x, n)
    return array


def save_model(path):
    from emkit.inference.testing import affinity_model

    affinity_model(NN, (18, 66, 66)).save(path)  # context 2: output 16 x 64 x 64


def run_blockwise(model, raw, folder, *, workers, cap, block, halo, stages=("predict", "segment"),
                  threshold=0.5):
    from emkit.blockwise import predict_blockwise, segment_blockwise

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result = {"workers": workers}
    for stage in stages:
        with PeakMemory() as memory:
            t = time.perf_counter()
            if stage == "predict":
                summary = predict_blockwise(model, raw, folder / "affs.zarr", block_shape=block,
                                            workers=workers, memory_limit=cap, progress=False)
            else:
                summary = segment_blockwise(folder / "affs.zarr", folder / "seg.zarr",
                                            block_shape=block, halo=halo, workers=workers,
                                            threshold=threshold, memory_limit=cap, progress=False)
            seconds = time.perf_counter() - t
        result[stage] = {"seconds": round(seconds, 1), "peak_rss_total_mib": memory.total >> 20,
                         "peak_rss_worker_mib": memory.child >> 20,
                         "blocks": summary["blocks"]}
        if stage == "segment":
            result[stage]["segments"] = summary["segments"][0]
        print(stage, workers, result[stage], file=sys.stderr, flush=True)
    return result


def whole_volume(model_path, raw_spec, threshold=0.5):
    import keras

    from emkit.inference import predict_volume
    from emkit.io import read_volume
    from emkit.postprocess import segment_affinities

    raw = read_volume(raw_spec)
    model = keras.saving.load_model(model_path)
    t = time.perf_counter()
    affs = predict_volume(model, raw, progress=False, tile_shape=(16, 64, 64))
    predict = time.perf_counter() - t
    t = time.perf_counter()
    [seg] = segment_affinities(affs, thresholds=(threshold,))
    return {"predict": round(predict, 1), "segment": round(time.perf_counter() - t, 1),
            "segments": int(seg.max())}


# --------------------------------------------------------------------------- graph memory


def write_cell_affinities(path, shape, chunks=(64, 128, 128), seed=0):
    """Affinities of the :func:`cell_labels` cells, 0.85 inside and 0.15 across, plus
    smooth Gaussian noise (sigma 1.5 voxels, sd 0.25), float32 ``(3, Z, Y, X)`` Zarr."""
    import zarr
    from scipy import ndimage

    array = zarr.create_array(store=str(path), shape=(3, *shape), chunks=(3, *chunks),
                              dtype="float32")
    for start in np.ndindex(*(-(-n // c) for n, c in zip(shape, chunks))):
        lo = [i * c for i, c in zip(start, chunks)]
        n = [min(c, s - a) for c, s, a in zip(chunks, shape, lo)]
        labels = cell_labels(lo[0] - 1, lo[1] - 1, lo[2] - 1, [k + 1 for k in n], seed)
        rng = np.random.default_rng([*lo, seed])
        block = np.empty((3, *n), np.float32)
        for c in range(3):
            before = [slice(1, None)] * 3
            before[c] = slice(0, -1)
            same = labels[1:, 1:, 1:] == labels[tuple(before)]
            noise = ndimage.gaussian_filter(rng.normal(0, 1, n), 1.5) * (0.25 / 0.19)
            block[c] = np.clip(np.where(same, 0.85, 0.15) + noise, 0, 1)
        array[(slice(None), *(slice(a, a + k) for a, k in zip(lo, n)))] = block


def graph_memory(shapes, work, block, halo, threshold):
    """Segments each shape blockwise, then measures the agglomeration's memory."""

    from emkit.blockwise import segment_blockwise, store

    report = []
    for shape in shapes:
        folder = work / "x".join(map(str, shape))
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        write_cell_affinities(folder / "affs.zarr", shape)
        kept = {}
        remove, store.remove = store.remove, lambda job, kept=kept: kept.setdefault("job", job)
        try:
            t = time.perf_counter()
            summary = segment_blockwise(folder / "affs.zarr", folder / "seg.zarr",
                                        block_shape=block, halo=halo, threshold=threshold,
                                        workers=1, processes=False, progress=False)
            seconds = time.perf_counter() - t
        finally:
            store.remove = remove
        row = {"shape": shape, "voxels_m": round(np.prod(shape) / 1e6, 1),
               "blocks": summary["blocks"], "levels": summary["levels"],
               "fragments": summary["fragments"], "edges": summary["edges"],
               "largest_chunk_edges": summary["largest_chunk_edges"],
               "segments": summary["segments"][0], "segment_seconds": round(seconds, 1)}
        for mode in ("whole", "hierarchy", "tables"):
            row[mode] = measure_in_child(mode, kept["job"])
        row["bytes_per_edge_whole"] = round((row["whole"]["peak_mib"] << 20) / row["edges"])
        print(json.dumps(row), file=sys.stderr, flush=True)
        report.append(row)
        store.remove(kept["job"])
        shutil.rmtree(folder, ignore_errors=True)
    return report


# --------------------------------------------------------------------------- top chunk


def write_top_job(folder, regions, *, stop=0.5, bins=0, seed=0):
    """A synthetic job folder whose top chunk (level 1, 2 x 2 blocks) holds a large graph.

    Regions on a lattice of shape ``regions`` ``(Z, Y, X)`` (X even), each two fragments
    along x; every region is frozen in its block (level 0 done), as on real data, where
    frozen regions propagate; the top chunk freezes nothing. Block edges: the region
    lattice's 6-neighbours plus two diagonals; face edges: fragment pairs across the two
    inner planes, a few of them joined pairs. Scores uniform, counts 1..50; with
    ``bins``, quantile scoring of random histograms (counts their sums).

    Returns:
        ``(regions, edges, fragments)`` of the top chunk's graph (edges before parallel
        face edges are summed).
    """
    from emkit.blockwise import hierarchy, store
    from emkit.blockwise.grid import block_grid
    from emkit.postprocess.options import SegmentOptions

    rz, ry, rx = regions
    if ry % 2 or rx % 4:
        raise SystemExit(f"--top-graph {regions}: Y must be even and X a multiple of 4")
    shape = (rz, ry, 2 * rx)  # fragments, one voxel each
    block = (rz + 1, ry // 2, rx)  # ids below the stride
    grid = block_grid((rz + 1, ry, 2 * rx), block, context=((1, 1, 1), (1, 1, 1)))
    stride = int(np.prod(block))
    rng = np.random.default_rng(seed)

    def frag_id(z, y, x):
        b = (y // block[1]) * 2 + x // block[2]
        return b * stride + 1 + np.ravel_multi_index((z, y % block[1], x % block[2]), block)

    def bounds(z, y, xr):  # face bounds of regions at (z, y, xr)
        fmin = np.full((z.size, 3), hierarchy.NO_FACE[0], np.int32)
        fmax = np.full((z.size, 3), hierarchy.NO_FACE[1], np.int32)
        for axis, near in ((1, (y == ry // 2 - 1) | (y == ry // 2)),
                           (2, (xr == rx // 2 - 1) | (xr == rx // 2))):
            fmin[near, axis] = fmax[near, axis] = 1
        return fmin, fmax

    z, y, xr = (a.ravel() for a in np.indices(regions))
    child = (y // block[1]) * 2 + (2 * xr) // block[2]
    region = frag_id(z, y, 2 * xr)
    lattice = np.arange(z.size).reshape(regions)
    pairs = []
    for d in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (1, 1, 0)):
        lo = lattice[tuple(slice(0, n - k) for n, k in zip(regions, d))].ravel()
        hi = lattice[tuple(slice(k, None) for k in d)].ravel()
        same = child[lo] == child[hi]
        pairs.append((lo[same], hi[same]))
    eu = np.concatenate([p[0] for p in pairs])
    ev = np.concatenate([p[1] for p in pairs])
    del pairs
    count = rng.integers(1, 51, eu.size)
    total = count * rng.random(eu.size)
    edges = eu.size
    frags = 2 * z.size
    top = hierarchy.chunks(grid, 1)[0]
    for c in range(4):
        mine = np.flatnonzero(child == c)
        order = mine[np.argsort(region[mine])]
        fmin, fmax = bounds(z[order], y[order], xr[order])
        e = np.flatnonzero(child[eu] == c)
        cz, cy, cx = z[order], y[order], xr[order]
        boundary = ((fmin != hierarchy.NO_FACE[0]).any(axis=1))
        fr = [frag_id(cz, cy, 2 * cx), frag_id(cz, cy, 2 * cx + 1)]
        frag = np.concatenate([f[boundary] for f in fr])
        rep = np.concatenate([region[order][boundary]] * 2)
        ffmin = np.concatenate([fmin[boundary]] * 2)
        ffmax = np.concatenate([fmax[boundary]] * 2)
        hist = _histograms(rng, e.size, bins)
        path = folder / "agglomerate" / "0" / f"{c}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        store.save_npz_atomic(
            path, a=fr[0], b=fr[1], score=np.sort(rng.random(order.size) * stop),
            nodes=region[order], fmin=fmin, fmax=fmax, u=region[eu[e]], v=region[ev[e]],
            count=hist.sum(axis=1, dtype=np.int64) if bins else count[e], total=total[e],
            hist=hist,
            frag=frag,
            frag_fmin=ffmin, frag_fmax=ffmax, frag_rep=rep, edges_in=np.int64(3 * order.size))
        store.mark_done(folder, "agglomerate-0", c)
        (folder / "graphs").mkdir(exist_ok=True)
        store.save_npz_atomic(folder / "graphs" / f"{c}.npz", n=np.int64(2 * order.size),
                              sizes=rng.integers(1, 200, 2 * order.size),
                              u=np.zeros(6 * order.size, np.int64))
    del eu, ev, count, total
    faces = {b: [] for b in range(4)}
    for axis, (plane_y, plane_x) in ((1, (ry // 2, None)), (2, (None, rx))):
        fz, fy, fx = (a.ravel() for a in np.indices(shape))
        near = (fy == plane_y) if axis == 1 else (fx == plane_x)
        fz, fy, fx = fz[near], fy[near], fx[near]
        after = frag_id(fz, fy, fx)
        before = frag_id(fz, fy - (axis == 1), fx - (axis == 2))
        blocks = (after - 1) // stride
        cnt = rng.integers(1, 51, after.size)
        joined = rng.random(after.size) < 0.01
        for b in np.unique(blocks):
            k = blocks == b
            hist = _histograms(rng, k.sum(), bins)
            faces[int(b)].append({
                "u": np.minimum(before, after)[k].astype(np.uint64),
                "v": np.maximum(before, after)[k].astype(np.uint64),
                "count": hist.sum(axis=1, dtype=np.int64) if bins else cnt[k],
                "total": cnt[k] * rng.random(k.sum()), "hist": hist,
                "joined_u": np.minimum(before, after)[k & joined].astype(np.uint64),
                "joined_v": np.maximum(before, after)[k & joined].astype(np.uint64),
                "axis": np.full(k.sum(), axis, np.int8),
                "joined_axis": np.full((k & joined).sum(), axis, np.int8)})
        edges += after.size
    (folder / "faces").mkdir(exist_ok=True)
    for b, parts in faces.items():
        if not parts:
            parts = [{"u": np.zeros(0, np.uint64), "v": np.zeros(0, np.uint64),
                      "count": np.zeros(0, np.int64), "total": np.zeros(0),
                      "hist": np.zeros((0, 1), np.uint32), "joined_u": np.zeros(0, np.uint64),
                      "joined_v": np.zeros(0, np.uint64), "axis": np.zeros(0, np.int8),
                      "joined_axis": np.zeros(0, np.int8)}]
        store.save_npz_atomic(folder / "faces" / f"{b}.npz",
                              **{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    options = SegmentOptions(thresholds=(stop,), scoring="quantile" if bins else "mean",
                             bins=bins or 64)
    params = {"stage": "segment", "affs": "none", "shape": [3, rz + 1, ry, 2 * rx],
              "block_shape": block,
              "halo": [1, 1, 1], "options": options.to_dict(), "outputs": []}
    (folder / "job.json").write_text(json.dumps(params))
    assert top.level == 1
    return z.size, edges, frags


def _histograms(rng, rows, bins):
    """Random affinity histograms of ``rows`` edges (each sums to 1 or more), or none."""
    if not bins:
        return np.zeros((0, 1), np.uint32)
    hist = rng.integers(0, 3, (rows, bins), dtype=np.uint32)
    hist[np.arange(rows), rng.integers(0, bins, rows)] += 1
    return hist


def top_graph(regions, work, threshold, bins=0):
    """Builds the synthetic top chunk of :func:`write_top_job`; measures its task and the
    tables step, each in a fresh process."""

    folder = work / "top"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n, edges, frags = write_top_job(folder, regions, stop=threshold, bins=bins)
    row = {"regions_shape": regions, "bins": bins, "regions": n, "edges": edges,
           "fragments": frags}
    for mode in ("top", "tables"):
        row[mode] = measure_in_child(mode, folder)
    top = row["top"]["peak_mib"] << 20
    row["top_bytes_per_edge"] = round(top / edges)
    row["top_bytes_per_region"] = round(top / n)
    row["tables_bytes_per_fragment"] = round((row["tables"]["peak_mib"] << 20) / frags)
    shutil.rmtree(folder, ignore_errors=True)
    return row



def measure_in_child(mode, folder) -> dict:
    """:func:`measure` in a fresh process with a Dask worker's environment (its
    ``distributed.nanny.pre-spawn-environ``: glibc trims freed memory, one BLAS thread)."""
    import subprocess

    import dask
    import distributed  # noqa: F401  (its configuration)

    env = {**os.environ, **{k: str(v) for k, v in
                            dask.config.get("distributed.nanny.pre-spawn-environ").items()}}
    done = subprocess.run([sys.executable, __file__, "--measure", mode, str(folder)],
                          check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _job(folder):
    """The :class:`~emkit.blockwise.segment.SegmentJob` of a job folder, from its job.json."""
    from emkit.blockwise import segment as bw
    from emkit.blockwise.grid import block_grid
    from emkit.postprocess.options import SegmentOptions

    params = json.loads((Path(folder) / "job.json").read_text())
    options = SegmentOptions(**{**params["options"],
                                "thresholds": tuple(params["options"]["thresholds"])})
    halo = tuple(params["halo"])
    grid = block_grid(params["shape"][1:], params["block_shape"], context=(halo, halo))
    return bw.SegmentJob(affs=params["affs"], folder=str(folder), grid=grid, options=options)


def measure(mode, folder):
    """One agglomeration of the job in ``folder``; prints its peak memory (JSON)."""
    import psutil

    from emkit.blockwise import hierarchy
    from emkit.blockwise import segment as bw
    from emkit.postprocess.agglomeration import history_indices, threshold_luts
    from emkit.postprocess.rag import RegionGraph

    folder = Path(folder)
    job = _job(folder)
    grid = job.grid
    options = job.options
    tiny = RegionGraph(np.array([1]), np.array([2]), np.array([1]), np.array([0.9]),
                       np.ones(1, np.float32))
    history_indices(tiny, 3, scoring="mean", quantile=0.5, stop=0.5)  # compiled before
    with tempfile.TemporaryDirectory() as warm:  # the baseline is taken, as is the tiny
        write_top_job(Path(warm), (2, 4, 4))      # job's memory: the tasks compiled before
        small = _job(warm)
        bw.agglomerate_task(hierarchy.chunks(small.grid, 1)[0], small)
        bw.tables_job(small)
    me = psutil.Process()
    base = me.memory_info().rss
    peak = [base]
    stop = threading.Event()
    exact = _reset_peak_rss()  # the kernel's high-water mark, else samples

    def sample():  # a numba loop holds the GIL: samples miss what it allocates
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    info = {}
    if mode == "whole":  # the single task segment_blockwise ran before (stitch.agglomerate_graph)
        counts = np.zeros(len(grid), np.int64)
        us, vs, cs, ts = [], [], [], []
        for b in range(len(grid)):
            with np.load(folder / "graphs" / f"{b}.npz") as graph:
                counts[b] = int(graph["n"])
                us.append(graph["u"] + b * job.stride)
                vs.append(graph["v"] + b * job.stride)
                cs.append(graph["count"])
                ts.append(graph["total"])
            with np.load(folder / "faces" / f"{b}.npz") as face:
                us.append(face["u"].astype(np.int64))
                vs.append(face["v"].astype(np.int64))
                cs.append(face["count"])
                ts.append(face["total"])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        n = int(counts.sum()) + 1
        u, v = np.concatenate(us), np.concatenate(vs)
        u = offsets[u // job.stride] + u % job.stride
        v = offsets[v // job.stride] + v % job.stride
        keys, inverse = np.unique(np.minimum(u, v) * n + np.maximum(u, v), return_inverse=True)
        rag = RegionGraph(keys // n, keys % n,
                          np.bincount(inverse, np.concatenate(cs)).astype(np.int64),
                          np.bincount(inverse, np.concatenate(ts)),
                          np.zeros(keys.size, np.float32))
        del u, v, keys, inverse, us, vs, cs, ts
        a, b, score = history_indices(rag, n, scoring="mean", quantile=0.5,
                                      stop=max(options.thresholds))
        threshold_luts(a, b, score, n, np.asarray(options.thresholds))
        info["edges"] = len(rag)
    elif mode == "hierarchy":
        shutil.rmtree(folder / "agglomerate", ignore_errors=True)
        for stage in (folder / "markers").glob("agglomerate-*"):
            shutil.rmtree(stage)
        for level in range(hierarchy.top_level(grid.shape) + 1):
            edges = [_task(chunk, job, base, exact, info) for chunk in hierarchy.chunks(grid, level)]
            info[f"level_{level}_largest_edges"] = max(edges)
    elif mode == "top":  # the top level alone, its children done
        top = hierarchy.top_level(grid.shape)
        shutil.rmtree(folder / "agglomerate" / str(top), ignore_errors=True)
        shutil.rmtree(folder / "markers" / f"agglomerate-{top}", ignore_errors=True)
        for chunk in hierarchy.chunks(grid, top):
            info["edges_in"] = _task(chunk, job, base, exact, info)
    else:
        bw.tables_job(job)
    seconds = time.perf_counter() - t
    stop.set()
    sampler.join()
    if exact:  # the tasks' peaks, or the kernel's since the last reset
        peak[0] = max(_peak_rss(), base + (info.get("task_peak_mib", 0) << 20))
    print(json.dumps({"peak_mib": (peak[0] - base) >> 20, "seconds": round(seconds, 1),
                      "peak": "VmHWM" if exact else "sampled", **info}))


def _task(chunk, job, base, exact, info) -> int:
    """One chunk task; with ``exact`` peaks, notes in ``info`` the largest task (its
    peak above ``base``, the regions and edges it read) and the most its peak was of the
    estimate of ``hierarchy.chunk_memory`` (where this emkit has it)."""
    from emkit.blockwise import hierarchy
    from emkit.blockwise import segment as bw

    if not exact:
        return bw.agglomerate_task(chunk, job)
    size = bw.chunk_size(chunk, job) if hasattr(bw, "chunk_size") else None
    _reset_peak_rss()
    edges = bw.agglomerate_task(chunk, job)
    peak = _peak_rss() - base
    if peak > info.get("task_peak_mib", -1) << 20:
        info["task_peak_mib"] = peak >> 20
        if size:
            info["task_regions"], info["task_edges_read"] = size
            info["task_estimate_mib"] = hierarchy.chunk_memory(
                *size, job.options.histogram_bins) >> 20
    if size:
        estimate = hierarchy.chunk_memory(*size, job.options.histogram_bins)
        info["most_of_estimate"] = round(max(info.get("most_of_estimate", 0), peak / estimate), 2)
    return edges


def _reset_peak_rss() -> bool:
    """Resets this process's peak resident memory (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _peak_rss() > 0
    except OSError:
        return False


def _peak_rss() -> int:
    """This process's peak resident memory since :func:`_reset_peak_rss`, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cap-mib", type=int, default=1536,
                        help="memory cap per Dask worker, MiB (default 1536; Dask pauses a "
                             "worker at 80%% of it, and a worker with TensorFlow and the model "
                             "loaded holds about 0.9 GiB)")
    parser.add_argument("--shape", default="128,2048,2048",
                        help="large volume (z, y, x); its float32 affinities must be >= 4x cap")
    parser.add_argument("--small", default="48,384,384", help="volume that fits, for overhead")
    parser.add_argument("--block", default="48,256,256")
    parser.add_argument("--halo", type=int, default=8)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--threshold", type=float, default=0.05,
                        help="agglomeration threshold (default 0.05: the synthetic cells differ "
                             "by 0.02-0.7 in intensity, so their boundary affinity 1 - |dx| is "
                             "0.3-0.98, and 0.5 would merge nearly every cell)")
    parser.add_argument("--workers", default="1,2", help="worker counts to time (default 1,2)")
    parser.add_argument("--stages", default="predict,segment",
                        help="predict, or predict,segment (segment needs predict's output)")
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the whole-volume comparison on --small")
    parser.add_argument("--try-small", action="store_true",
                        help="allow a volume under 4x the cap (to try the script)")
    parser.add_argument("--graph-memory", metavar="Z,Y,X[;Z,Y,X...]",
                        help="measure the agglomeration's memory against the region graph's "
                             "size on synthetic affinities of these shapes (and nothing else)")
    parser.add_argument("--top-graph", metavar="Z,Y,X",
                        help="measure the top agglomeration task and the tables step on a "
                             "synthetic top chunk of Z x Y x X regions (X a multiple of 4), "
                             "every region frozen below it (and nothing else)")
    parser.add_argument("--bins", type=int, default=0,
                        help="with --top-graph: quantile scoring of histograms of this many "
                             "bins (default 0: mean scoring)")
    args = parser.parse_args(argv)
    if args.top_graph:
        regions = tuple(int(v) for v in args.top_graph.split(","))
        work = Path(args.workdir or tempfile.mkdtemp(prefix="emkit-top-graph-"))
        print(json.dumps(top_graph(regions, work, args.threshold, args.bins), indent=1))
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.graph_memory:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.graph_memory.split(";")]
        work = Path(args.workdir or tempfile.mkdtemp(prefix="emkit-graph-memory-"))
        block = tuple(int(v) for v in args.block.split(","))
        report = graph_memory(shapes, work, block, args.halo, args.threshold)
        print(json.dumps({"block": block, "halo": args.halo, "threshold": args.threshold,
                          "runs": report}, indent=1))
        shutil.rmtree(work, ignore_errors=True)
        return
    shape = tuple(int(v) for v in args.shape.split(","))
    small = tuple(int(v) for v in args.small.split(","))
    block = tuple(int(v) for v in args.block.split(","))
    cap = args.cap_mib << 20
    affs_bytes = 12 * int(np.prod(shape))
    if affs_bytes < 4 * cap and not args.try_small:
        raise SystemExit(f"--shape {shape}: affinities {affs_bytes >> 20} MiB < 4 x cap "
                         f"{args.cap_mib} MiB")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="emkit-blockwise-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    import subprocess

    model = work / "affinity.keras"
    _save_in_child(model)  # a child process builds it: keeps TensorFlow out of this one
    report = {"cap_mib": args.cap_mib, "shape": shape, "voxels_m": round(np.prod(shape) / 1e6, 1),
              "affs_mib": affs_bytes >> 20, "block": block, "halo": args.halo,
              "threshold": args.threshold, "runs": []}
    t = time.perf_counter()
    write_raw(work / "raw.zarr", shape)
    print(f"raw written in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    stages = tuple(s for s in args.stages.split(",") if s)
    if stages not in (("predict",), ("predict", "segment")):
        raise SystemExit(f"--stages: expected predict or predict,segment, got {args.stages!r}")
    for workers in (int(w) for w in args.workers.split(",") if w):
        run = run_blockwise(model, work / "raw.zarr", work / f"w{workers}", workers=workers,
                            cap=cap, block=block, halo=args.halo, stages=stages,
                            threshold=args.threshold)
        for stage in stages:
            run[stage]["mvoxel_per_s"] = round(np.prod(shape) / 1e6 / run[stage]["seconds"], 2)
            run[stage]["under_cap"] = run[stage]["peak_rss_worker_mib"] < args.cap_mib
        report["runs"].append(run)
        shutil.rmtree(work / f"w{workers}", ignore_errors=True)
    if args.no_overhead:
        print(json.dumps(report, indent=1))
        shutil.rmtree(work, ignore_errors=True)
        return
    # overhead on a volume that fits
    write_raw(work / "small.zarr", small)
    blockwise = run_blockwise(model, work / "small.zarr", work / "small", workers=1, cap=cap,
                              block=block, halo=args.halo, threshold=args.threshold)
    whole = json.loads(subprocess.run(
        [sys.executable, __file__, "--whole", str(model), str(work / "small.zarr"),
         str(args.threshold)],
        check=True, capture_output=True, text=True).stdout)
    report["overhead"] = {"shape": small, "whole": whole,
                          "blockwise_1_worker": {s: blockwise[s]["seconds"]
                                                 for s in ("predict", "segment")},
                          "blockwise_segments": blockwise["segment"]["segments"]}
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


def _save_in_child(path):
    import subprocess

    subprocess.run([sys.executable, __file__, "--save-model", str(path)], check=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--save-model":
        save_model(sys.argv[2])
    elif len(sys.argv) > 3 and sys.argv[1] == "--measure":
        measure(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 3 and sys.argv[1] == "--whole":
        print(json.dumps(whole_volume(sys.argv[2], sys.argv[3], float(sys.argv[4]))))
    else:
        main()
