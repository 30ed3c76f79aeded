"""Time emkit's 3D watershed + agglomeration against waterz and a scikit-image baseline.

    .venv/bin/python benchmarks/postprocess.py [--shape 100,1000,1000] [--objects 2000]
        [--thresholds 0.3,0.5,0.7] [--methods emkit,waterz,skimage]

Ground truth is a Voronoi tessellation of ``--objects`` random seeds (computed on a grid
at half the resolution in y and x, then upsampled), so objects are blobs about 40 voxels
across. Affinities are made from it with ``emkit.postprocess.noisy_affinities`` (the
documented noise model: logit noise of std 1.3 smoothed by 2 voxels, plus membrane leaks;
about 5% of the boundary edges read above 0.5). Every method segments the same array in
the same process, one after the other:

* ``emkit``: ``segment_affinities`` (watershed, size-dependent merging, mean-affinity
  agglomeration), one pass for all thresholds, channels-last input.
* ``waterz``: ``waterz.agglomerate`` with its prebuilt default (watershed + mean
  affinity), channels-first input (the copy is made before timing); skipped if waterz is
  not installed (``pip install waterz==0.10.1``).
* ``skimage``: ``skimage.segmentation.watershed`` on the boundary map ``1 - mean``
  of the three affinities, seeded by the 6-connected components of the interior
  (``boundaries < 0.3``) eroded by 4 voxels with a distance transform, which cuts the
  thin bridges that noise makes (no agglomeration, so one segmentation).

Each method runs in a forked child process, so that one that runs out of memory is
reported instead of ending the run; the child's extra peak memory (above what the parent
held at the fork) is reported too. Times are wall-clock seconds of the segmentation calls
only (not the scoring). The adapted Rand error (``emkit.metrics.adapted_rand_error``, 3D)
is given at every threshold.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

import numpy as np
from scipy.spatial import cKDTree

from emkit.metrics import adapted_rand_error
from emkit.postprocess import noisy_affinities, segment_affinities


def voronoi_labels(shape, n_objects, rng, factor=(1, 2, 2)):
    """uint64 labels 1..n_objects of a Voronoi tessellation, upsampled by ``factor``."""
    coarse = tuple(-(-s // f) for s, f in zip(shape, factor))
    seeds = rng.random((n_objects, 3)) * coarse
    tree = cKDTree(seeds)
    labels = np.empty(coarse, np.uint64)
    plane = np.stack(
        np.meshgrid(np.arange(coarse[1]) + 0.5, np.arange(coarse[2]) + 0.5, indexing="ij"),
        axis=-1,
    ).reshape(-1, 2)
    for z in range(coarse[0]):
        points = np.column_stack([np.full(len(plane), z + 0.5), plane])
        labels[z] = tree.query(points, workers=-1)[1].reshape(coarse[1:]) + 1
    for axis, f in enumerate(factor):
        labels = labels.repeat(f, axis=axis)
    return np.ascontiguousarray(labels[: shape[0], : shape[1], : shape[2]])


def memory_gib(field):
    """``VmRSS`` (current) or ``VmHWM`` (peak) resident memory of this process, GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def in_child(name, affs, gt, thresholds):
    """Run METHODS[name] in a forked process; (seconds, errors, extra GiB) or an error."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    def target():
        base = memory_gib("VmRSS")
        try:
            seconds, errors = METHODS[name](affs, gt, thresholds)
            send.send((seconds, errors, memory_gib("VmHWM") - base))
        except Exception as exc:  # noqa: BLE001 (any failure is reported in the table)
            send.send(f"{type(exc).__name__}: {exc}")

    child = context.Process(target=target)
    child.start()
    child.join()
    if receive.poll():
        return receive.recv()
    return f"died with exit code {child.exitcode} (killed: out of memory?)"


def run_emkit(affs, gt, thresholds):
    start = time.perf_counter()
    segs = segment_affinities(affs, thresholds=thresholds)
    seconds = time.perf_counter() - start
    errors = [adapted_rand_error(seg, gt) for seg in segs]
    return seconds, errors


def run_waterz(affs, gt, thresholds):
    import waterz

    channels_first = np.ascontiguousarray(np.moveaxis(affs[..., :3], -1, 0))
    seconds, errors = 0.0, []
    start = time.perf_counter()
    for seg in waterz.agglomerate(channels_first, thresholds=list(thresholds)):
        seconds += time.perf_counter() - start
        errors.append(adapted_rand_error(seg, gt))  # seg is reused by the next step
        start = time.perf_counter()
    seconds += time.perf_counter() - start
    return seconds, errors


def run_skimage(affs, gt, thresholds):
    import cc3d
    from scipy import ndimage
    from skimage.segmentation import watershed

    start = time.perf_counter()
    boundaries = 1.0 - affs[..., :3].mean(axis=-1, dtype=np.float32)
    distance = ndimage.distance_transform_edt(boundaries < 0.3)
    markers = cc3d.connected_components(distance >= 4, connectivity=6)
    del distance
    seg = watershed(boundaries, markers)
    seconds = time.perf_counter() - start
    error = adapted_rand_error(seg, gt)
    return seconds, [error] * len(thresholds)


METHODS = {"emkit": run_emkit, "waterz": run_waterz, "skimage": run_skimage}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="100,1000,1000", help="z,y,x")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--thresholds", default="0.3,0.5,0.7")
    parser.add_argument("--methods", default="emkit,waterz,skimage",
                        help="any of emkit, waterz, skimage")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    thresholds = [float(t) for t in args.thresholds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    gt = voronoi_labels(shape, args.objects, rng)
    affs = noisy_affinities(gt, seed=args.seed)
    n = gt.size
    print(
        f"volume {shape} = {n:.3g} voxels, {args.objects} objects; data made in "
        f"{time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    if "emkit" in methods:  # compile (or load the cached code) outside the timing
        segment_affinities(affs[:8, :32, :32], thresholds=thresholds)
    rows = []
    for name in methods:
        if name == "waterz":
            try:
                import waterz  # noqa: F401
            except ImportError:
                print("waterz is not installed: skipped", file=sys.stderr)
                continue
        result = in_child(name, affs, gt, thresholds)
        rows.append((name, result))
        print(f"{name}: {result}", file=sys.stderr)
    header = " | ".join(f"ARE @ {t:g}" for t in thresholds)
    print(f"| method | seconds | voxels/s | extra peak memory | {header} |")
    print("|---|---:|---:|---:|" + "---:|" * len(thresholds))
    for name, result in rows:
        if isinstance(result, str):
            print(f"| {name} | failed: {result} |" + " |" * (2 + len(thresholds)))
            continue
        seconds, errors, extra = result
        cells = " | ".join(f"{e:.4f}" for e in errors)
        print(f"| {name} | {seconds:.1f} | {n / seconds:.3g} | {extra:.1f} GiB | {cells} |")


if __name__ == "__main__":
    main()
