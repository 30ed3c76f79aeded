"""Blockwise prediction and segmentation on Dask: memory, throughput, overhead (issue 9).

    nice -n 5 python benchmarks/blockwise.py [--cap-mib 1536] [--shape 128,2048,2048]
        [--workers 1,2] [--stages predict,segment] [--no-overhead] [--try-small]
    nice -n 5 python benchmarks/blockwise.py --graph-memory "64,512,512;128,1024,1024" \
        --block 64,64,64 --threshold 0.5

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
it segments once, then runs in fresh processes, each sampling its own resident memory
(psutil, every 5 ms) above what it held before: (a) the agglomeration of the whole
stitched graph in one process, as ``segment_blockwise`` did before it was
hierarchical, (b) every hierarchical chunk task in turn, as one worker would (its
peak is the largest task's), and (c) the task that joins the merges into the tables.
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
    import subprocess

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
            done = subprocess.run([sys.executable, __file__, "--measure", mode, str(kept["job"])],
                                  check=True, capture_output=True, text=True)
            row[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        row["bytes_per_edge_whole"] = round((row["whole"]["peak_mib"] << 20) / row["edges"])
        print(json.dumps(row), file=sys.stderr, flush=True)
        report.append(row)
        store.remove(kept["job"])
        shutil.rmtree(folder, ignore_errors=True)
    return report


def measure(mode, folder):
    """One agglomeration of the job in ``folder``; prints its peak memory (JSON)."""
    import psutil

    from emkit.blockwise import hierarchy
    from emkit.blockwise import segment as bw
    from emkit.blockwise.grid import block_grid
    from emkit.postprocess.agglomeration import history_indices, threshold_luts
    from emkit.postprocess.options import SegmentOptions
    from emkit.postprocess.rag import RegionGraph

    folder = Path(folder)
    params = json.loads((folder / "job.json").read_text())
    options = SegmentOptions(**{**params["options"],
                                "thresholds": tuple(params["options"]["thresholds"])})
    halo = tuple(params["halo"])
    grid = block_grid(params["shape"][1:], params["block_shape"], context=(halo, halo))
    job = bw.SegmentJob(affs=params["affs"], folder=str(folder), grid=grid, options=options)
    tiny = RegionGraph(np.array([1]), np.array([2]), np.array([1]), np.array([0.9]),
                       np.ones(1, np.float32))
    history_indices(tiny, 3, scoring="mean", quantile=0.5, stop=0.5)  # compiled before
    hierarchy.agglomerate_chunk(  # the baseline is taken, as is the tiny graph's memory
        {**hierarchy.empty_graph(0), "frag": np.zeros(0, np.int64),
         "frag_fmin": np.zeros((0, 3), np.int32), "frag_fmax": np.zeros((0, 3), np.int32),
         "frag_rep": np.zeros(0, np.int64)}, hierarchy.chunks(grid, 0)[0],
        scoring="mean", quantile=0.5, stop=0.5)
    me = psutil.Process()
    base = me.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
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
            edges = [bw.agglomerate_task(c, job) for c in hierarchy.chunks(grid, level)]
            info[f"level_{level}_largest_edges"] = max(edges)
    else:
        bw.tables_job(job)
    seconds = time.perf_counter() - t
    stop.set()
    sampler.join()
    print(json.dumps({"peak_mib": (peak[0] - base) >> 20, "seconds": round(seconds, 1),
                      **info}))


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
    args = parser.parse_args(argv)
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
