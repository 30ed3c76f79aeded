"""Time emkit's metrics against scikit-image on three kinds of 1e8-voxel label volumes.

    .venv/bin/python benchmarks/metrics.py [--shape 100,1024,1024] [--repeats 3]
        [--kinds blobby,noise,real]

Each kind is a pair (ground truth, prediction) of uint64 label volumes of ``--shape``
(default SNEMI3D-sized, 100 x 1024 x 1024 = 1.05e8 voxels):

* blobby: random Voronoi tessellations, 2,000 ground-truth and 5,000 predicted objects,
  upsampled from a coarse grid so that objects are blobs tens of voxels across.
* noise: white-noise labels (2,000 and 5,000 labels, independent per voxel): no runs of
  equal labels at all, the worst case for run-length counting.
* real: the FlyEM medulla ground truth (``shared/data/neuroproof_medulla``, 188 x 250 x
  250, 10 nm) mirrored in tiles up to the shape (each tile with labels of its own), and
  a prediction made from it as segmentations err: 30% of the objects split into
  fragments about 40 voxels across, one object in ten merged into another, and every
  boundary shifted by one voxel in x.

Both libraries score the same arrays in the same process: ``adapted_rand_error(gt, seg)``
and ``variation_of_information(gt, seg, ignore_labels=(0,))`` of scikit-image against
emkit's ``adapted_rand_error(seg, gt)`` and ``variation_of_information(seg, gt)``. The
script checks that the values agree to 1e-9 and prints a Markdown table of best-of-N wall
times and their ratio. The predictions have no label 0, where emkit and scikit-image
agree by definition (emkit counts predicted 0 as singletons).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import skimage
from scipy.spatial import cKDTree
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from skimage.metrics import variation_of_information as sk_variation_of_information

from emkit.metrics import adapted_rand_error, variation_of_information

MEDULLA = (
    Path(__file__).resolve().parents[1].parent
    / "shared" / "data" / "neuroproof_medulla" / "neuroproof_medulla.h5"
)
TOLERANCE = 1e-9


def voronoi_labels(shape, n_objects, rng, factor=(4, 8, 8)):
    """Random Voronoi blobs: nearest of ``n_objects`` seeds on a grid ``factor`` coarser."""
    coarse = tuple(max(1, -(-s // f)) for s, f in zip(shape, factor))
    seeds = rng.random((n_objects, 3)) * coarse
    grid = np.stack(
        np.meshgrid(*[np.arange(c) + 0.5 for c in coarse], indexing="ij"), axis=-1
    ).reshape(-1, 3)
    labels = cKDTree(seeds).query(grid)[1].reshape(coarse).astype(np.uint64) + 1
    for axis, f in enumerate(factor):
        labels = labels.repeat(f, axis=axis)
    return np.ascontiguousarray(labels[tuple(slice(0, s) for s in shape)])


def blobby_pair(shape, rng):
    return voronoi_labels(shape, 2000, rng), voronoi_labels(shape, 5000, rng)


def noise_pair(shape, rng):
    gt = rng.integers(1, 2001, shape, dtype=np.uint64)
    seg = rng.integers(1, 5001, shape, dtype=np.uint64)
    return gt, seg


def fragmented_prediction(gt, rng):
    """A prediction from ``gt``: splits, merges and boundaries shifted by one voxel."""
    ids = np.unique(gt[gt > 0])
    # 30% of the objects split into fragments of a Voronoi partition ~40 voxels across
    n_frag = max(2, gt.size // 40**3)
    frag = voronoi_labels(gt.shape, n_frag, rng, factor=(4, 4, 4)).astype(np.int64)
    split = np.zeros(int(gt.max()) + 1, dtype=bool)
    split[rng.choice(ids, size=len(ids) * 3 // 10, replace=False)] = True
    seg = gt.astype(np.int64) * (n_frag + 1) + np.where(split[gt], frag, 0)
    _, seg = np.unique(seg, return_inverse=True)
    seg = seg.reshape(gt.shape) + 1
    # one segment in ten merged into another
    lut = np.arange(seg.max() + 1)
    n_seg = len(lut) - 1
    merged = rng.choice(np.arange(1, n_seg + 1), size=(n_seg // 10, 2), replace=False)
    lut[merged[:, 1]] = merged[:, 0]
    seg = lut[seg]
    # boundaries off by one voxel
    return np.roll(seg, 1, axis=2).astype(np.uint64)


def mirror_tiles(base, shape):
    """``base`` mirrored in tiles up to ``shape``; each tile gets labels of its own."""
    pad = [(0, max(0, s - b)) for s, b in zip(shape, base.shape)]
    tiled = np.pad(base, pad, mode="symmetric")[tuple(slice(0, s) for s in shape)]
    n_tiles = [-(-s // b) for s, b in zip(shape, base.shape)]
    tile = [np.arange(s) // b for s, b in zip(shape, base.shape)]
    index = (tile[0][:, None, None] * n_tiles[1] + tile[1][None, :, None]) * n_tiles[2] + tile[
        2
    ][None, None, :]
    step = np.uint64(int(base.max()) + 1)
    out = np.empty(shape, dtype=np.uint64)
    for z in range(shape[0]):  # a section at a time: no volume-sized temporaries
        out[z] = np.where(tiled[z] > 0, tiled[z] + index[z].astype(np.uint64) * step, 0)
    return out


def real_pair(shape, rng):
    import h5py

    if not MEDULLA.is_file():
        raise SystemExit(f"real labels: {MEDULLA} not found (see shared/data/README.md)")
    with h5py.File(MEDULLA, "r") as f:
        gt = f["volumes/labels/neuron_ids"][...]
    seg = fragmented_prediction(gt, rng)
    return mirror_tiles(gt, shape), mirror_tiles(seg, shape)


KINDS = {"blobby": blobby_pair, "noise": noise_pair, "real": real_pair}
NAMES = {"blobby": "blobby (Voronoi)", "noise": "white noise", "real": "real (FlyEM medulla)"}


def best_time(fn, repeats):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bench_kind(kind, gt, seg, repeats):
    """Rows (labels, metric, skimage s, emkit s, value) for one pair of volumes."""
    rows = []
    # alternate the libraries, so that both see the same load on a shared machine
    t_sk, t_em = float("inf"), float("inf")
    for _ in range(repeats):
        t, sk_are = best_time(lambda: sk_adapted_rand_error(gt, seg)[0], 1)
        t_sk = min(t_sk, t)
        t, em_are = best_time(lambda: adapted_rand_error(seg, gt), 1)
        t_em = min(t_em, t)
    assert abs(sk_are - em_are) <= TOLERANCE, (kind, sk_are, em_are)
    rows.append((NAMES[kind], "adapted Rand error", t_sk, t_em, em_are))

    t_sk, t_em = float("inf"), float("inf")
    for _ in range(repeats):
        t, sk_vi = best_time(
            lambda: sk_variation_of_information(gt, seg, ignore_labels=(0,)), 1
        )
        t_sk = min(t_sk, t)
        t, em_vi = best_time(lambda: variation_of_information(seg, gt), 1)
        t_em = min(t_em, t)
    assert np.all(np.abs(np.subtract(sk_vi, em_vi)) <= TOLERANCE), (kind, sk_vi, em_vi)
    rows.append((NAMES[kind], "VOI split + merge", t_sk, t_em, float(sum(em_vi))))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="100,1024,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default="blobby,noise,real")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"--kinds: unknown {unknown}; choose from {', '.join(KINDS)}")
    if len(shape) != 3:
        raise SystemExit(f"--shape: expected z,y,x, got {args.shape!r}")
    print(
        f"volumes: {shape}, {np.prod(shape):.3g} voxels, uint64; best of {args.repeats}; "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), load average "
        f"{os.getloadavg()[0]:.1f} before"
    )
    # compile emkit's kernels before timing
    adapted_rand_error(np.arange(8).reshape(2, 2, 2) + 1, np.ones((2, 2, 2), np.uint64))
    rows = []
    started = time.perf_counter()
    for kind in kinds:
        gt, seg = KINDS[kind](shape, np.random.default_rng(0))
        print(
            f"{kind}: {len(np.unique(gt[:: 7, ::7, ::7]))}+ gt and "
            f"{len(np.unique(seg[::7, ::7, ::7]))}+ predicted labels (in a 1/343 sample)",
            flush=True,
        )
        rows += bench_kind(kind, gt, seg, args.repeats)
        del gt, seg
    print(
        f"load average {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print()
    print(
        f"| labels | metric | scikit-image {skimage.__version__} (s) | emkit (s) | speed-up "
        "| value |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for labels, metric, sk, em, value in rows:
        print(f"| {labels} | {metric} | {sk:.2f} | {em:.2f} | {sk / em:.1f}x | {value:.6f} |")


if __name__ == "__main__":
    main()
