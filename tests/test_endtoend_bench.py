"""benchmarks/endtoend.py: the tiled, mirrored test volume and the results table (no CLI)."""

import importlib.util
import json
from pathlib import Path

import numpy as np

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "endtoend.py"


def load():
    spec = importlib.util.spec_from_file_location("_endtoend_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cube(path, shape=(6, 5, 4)):
    import h5py

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = (rng.integers(0, 4, shape) * 1000 + 7).astype(np.uint64)  # ids 7 ... 3007
    labels[0, 0, 0] = 0
    with h5py.File(path, "w") as f:
        f.create_dataset("volumes/raw", data=raw).attrs["resolution"] = (10.0, 10.0, 10.0)
        f.create_dataset("volumes/labels/neuron_ids", data=labels)
    return raw, labels


def test_mirror_index():
    e = load()
    src, tile = e.mirror_index(0, 10, 3)
    assert src.tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]
    assert tile.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


def test_tiled_volume(tmp_path):
    e = load()
    raw, labels = cube(tmp_path / "cube.h5")
    shape = (14, 12, 9)  # partial tiles on every axis
    source = e.Source(tmp_path / "cube.h5", "none", shape)
    r, g = source.chunk((0, 0, 0), shape)
    assert r.shape == g.shape == shape and g.dtype == np.uint64
    assert np.array_equal(r[:6, :5, :4], raw) and np.array_equal(r[6:12, :5, :4], raw[::-1])
    # one id per (tile, body), the same on both sides of every mirror seam
    for axis, n in enumerate(raw.shape):
        for p in range(n, shape[axis], n):
            assert np.array_equal(np.take(g, p - 1, axis), np.take(g, p, axis))
    first = g[:6, :5, :4]
    assert np.array_equal(first == 0, labels == 0)
    pairs = np.unique(np.stack([labels.ravel(), first.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    # any chunk equals the same region of the whole
    r2, g2 = source.chunk((5, 3, 2), (7, 8, 6))
    assert np.array_equal(r2, r[5:12, 3:11, 2:8]) and np.array_equal(g2, g[5:12, 3:11, 2:8])

    # written chunk by chunk; a rerun writes only the chunks without a marker
    import zarr

    assert e.write_volume(source, tmp_path / "vol", shape, (4, 8, 8), progress=False) == (16, 16)
    assert np.array_equal(zarr.open_array(store=str(tmp_path / "vol" / "gt.zarr"))[...], g)
    (tmp_path / "vol" / ".build" / "0_0_0").unlink()
    assert e.write_volume(source, tmp_path / "vol", shape, (4, 8, 8), progress=False) == (16, 1)
    assert np.array_equal(zarr.open_array(store=str(tmp_path / "vol" / "raw.zarr"))[...], r)


def test_report():
    e = load()

    def rec(seconds, workers, volume="64x512x512", **more):
        return {"done": True, "workers": workers, "volume": volume, "voxels": 64 * 512 * 512,
                "attempts": [{"seconds": seconds, "cpu_seconds": seconds, "rc": 0,
                              "peak_rss_worker_mib": 900, "peak_rss_total_mib": 1800,
                              "peak_rss_main_mib": 700}], **more}

    state = {"config": {"shape": [64, 512, 512], "voxels": 64 * 512 * 512,
                        "crop_shape": "64,512,512", "memory_limit": "2GiB"},
             "stages": {"speedup/w1/predict": rec(100, 1), "speedup/w2/predict": rec(50, 2),
                        "predict": rec(60, 2),
                        "crop/whole/evaluate": rec(1, 1, metrics={"adapted_rand_error": 0.25}),
                        "crop/blockwise/evaluate": rec(1, 1,
                                                       metrics={"adapted_rand_error": 0.25})}}
    table = e.report(json.loads(json.dumps(state)))
    assert "| 2.00x (1 -> 2) |" in table
    assert "difference +0.0000" in table and "incomplete" in table
