"""Blockwise prediction and segmentation on Dask: memory, throughput, overhead (issue 9).

    nice -n 5 python benchmarks/blockwise.py [--cap-mib 1536] [--shape 128,2048,2048]
        [--workers 1,2] [--stages predict,segment] [--no-overhead] [--try-small]

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


def cell_raw(z0, y0, x0, shape, seed=0):
    """Box cells 12 x 48 x 40 voxels (rows shifted per slab), constant intensity + noise."""
    z, y, x = np.meshgrid(*(np.arange(s, s + n) for s, n in zip((z0, y0, x0), shape)),
                          indexing="ij")
    cz = z // 12
    cy = (y + 17 * cz) // 48
    cx = (x + 23 * cy) // 40
    key = (cz * 73856093) ^ (cy * 19349663) ^ (cx * 83492791) ^ seed
    intensity = 40 + (key % 176)
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
            result[stage]["segments"] = summary["segments"]
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
    args = parser.parse_args(argv)
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
    elif len(sys.argv) > 3 and sys.argv[1] == "--whole":
        print(json.dumps(whole_volume(sys.argv[2], sys.argv[3], float(sys.argv[4]))))
    else:
        main()
