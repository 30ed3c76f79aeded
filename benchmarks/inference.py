"""Tiled inference against one bare ``model.predict`` over the same tiles: the cost of tiling.

    .venv/bin/python benchmarks/inference.py --quick    # smaller volumes: ~6 min on 2 cores
    KERAS_BACKEND=jax python3 benchmarks/inference.py   # the full sizes: ~30 s on one GPU

For N4 (dense form), the 2D U-Net and the 3D residual U-Net of the registry at
full width, it times :func:`emkit.inference.predict_volume` on a random uint8
volume against two bare runs of the same compiled network over the same tiles,
stacked in advance (inputs already read, mirrored and scaled; outputs neither
blended nor written), in the same process with the same batch size: one
``model.predict`` call, and a loop of ``model.predict_on_batch`` (the tighter
of the two: ``model.predict`` adds its own data pipeline). The ratio of
predict_volume's time to the faster bare time is what tiling adds: reading and
mirroring tile inputs, scaling, blending, and the Python loop. It does not count
the overlap itself (neighbouring tiles compute some voxels twice), shown apart
as "tile voxels / volume voxels". Throughput is volume voxels per second for
all. One warm-up, then the median of ``--repeats`` timed rounds, the runs
alternating within each round. Prints a Markdown table for BENCHMARKS.md.

Runs on any Keras backend (``KERAS_BACKEND=jax`` on a machine without
TensorFlow); input scaling is passed in (uint8 / 255, the sampler's) so that it
needs none of the training stack.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

import keras
import numpy as np

from emkit.inference import create_output, plan_prediction, predict_volume
from emkit.inference.tiling import read_mirrored
from emkit.models.architectures import build_model

# name -> (architecture, volume (Z, Y, X), --quick volume, output tile or None, batch size)
CASES = {
    "n4": ("n4", (8, 512, 512), (2, 384, 384), None, 4),
    "unet2d": ("unet2d", (8, 512, 512), (1, 512, 512), None, 2),
    "rsunet": ("rsunet", (32, 256, 256), (18, 256, 256), None, 2),
}


def unit(raw: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], as :func:`emkit.preprocess.raw_to_unit`."""
    return np.divide(raw, np.float32(255), dtype=np.float32)


def stacked_tiles(plan, raw: np.ndarray) -> np.ndarray:
    """Every tile's input, read, mirrored and scaled as predict_volume does, in one array."""
    grid = plan.grid
    raw3 = raw if raw.ndim == 3 else raw[None]
    tiles = grid.tiles()
    x = np.empty((len(tiles), *grid.input_shape, 1), np.float32)
    for j, tile in enumerate(tiles):
        x[j, ..., 0] = unit(read_mirrored(raw3, tile.input_start, grid.input_shape))
    return x[:, 0] if plan.model_ndim == 2 else x


def bench(name: str, volume, tile, batch_size: int, repeats: int, out_of_core: bool) -> list[dict]:
    arch = CASES[name][0]
    keras.utils.set_random_seed(0)
    model = build_model(arch)
    raw = np.random.default_rng(0).integers(0, 256, volume, dtype=np.uint8)
    plan = plan_prediction(model, raw.shape, tile_shape=tile)
    x = stacked_tiles(plan, raw)
    net = plan.model

    def tiled():
        predict_volume(model, raw, tile_shape=tile, batch_size=batch_size, normalize=unit,
                       progress=False)

    def bare_predict():
        net.predict(x, batch_size=batch_size, verbose=0)

    def bare_loop():
        for i in range(0, len(x), batch_size):
            net.predict_on_batch(x[i : i + batch_size])

    folder = tempfile.mkdtemp(prefix="emkit-bench-")

    def to_zarr():
        spec = os.path.join(folder, "pred.zarr")
        with create_output(spec, (*raw.shape, plan.out_channels), overwrite=True) as out:
            predict_volume(model, raw, tile_shape=tile, batch_size=batch_size, normalize=unit,
                           out=out, progress=False)

    runs = {"bare model.predict": bare_predict, "bare predict_on_batch loop": bare_loop,
            "predict_volume": tiled}
    if out_of_core:
        try:
            import zarr  # noqa: F401
        except ModuleNotFoundError:
            print("  (zarr is not installed: no out-of-core run)", file=sys.stderr)
        else:
            runs["predict_volume to Zarr"] = to_zarr
    tiled()  # warm-up: traces the network for the full and the last batch
    bare_predict()  # and model.predict's own first-call set-up
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    grid = plan.grid
    voxels = int(np.prod(volume))
    tile_voxels = len(grid) * int(np.prod(grid.output_shape))
    base = min(statistics.median(times[key]) for key in times if key.startswith("bare"))
    rows = []
    for key, values in times.items():
        seconds = statistics.median(values)
        rows.append({
            "arch": name,
            "run": key,
            "volume": "x".join(map(str, volume)),
            "tile": f"{_fmt(plan.input_shape)} -> {_fmt(plan.output_shape)}",
            "tiles": len(grid),
            "redundancy": tile_voxels / voxels,
            "batch": batch_size,
            "seconds": seconds,
            "voxels_per_s": voxels / seconds,
            "overhead": seconds / base - 1,
        })
        print(f"  {name:7s} {key:24s} {seconds:8.2f} s  {voxels / seconds:12,.0f} voxels/s",
              file=sys.stderr, flush=True)
    return rows


def _fmt(shape) -> str:
    return "x".join(str(v) for v in shape)


def _device() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"jax {jax.__version__}, {jax.devices()[0].device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow {tf.__version__}, {'GPU' if gpus else 'CPU'}"
    return backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller volumes (2-core CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per number (median)")
    parser.add_argument("--only", nargs="+", choices=list(CASES), help="run these cases only")
    parser.add_argument("--batch-size", type=int, help="tiles per pass for every case")
    parser.add_argument("--no-zarr", action="store_true", help="skip the out-of-core Zarr run")
    parser.add_argument("--z-factor", type=int, default=1,
                        help="multiply every volume's Z by this (longer runs on a GPU)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rows = []
    for name in args.only or CASES:
        _, volume, quick_volume, tile, batch = CASES[name]
        volume = quick_volume if args.quick else volume
        volume = (volume[0] * args.z_factor, *volume[1:])
        rows += bench(
            name, volume, tile, args.batch_size or batch,
            args.repeats, out_of_core=not args.no_zarr and name == "n4",
        )
    print(
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), Keras {keras.__version__}, "
        f"backend {keras.backend.backend()} ({_device()}); median of {args.repeats} timed runs "
        f"after one warm-up; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
        f"after; {time.perf_counter() - start:.0f} s in all.\n"
    )
    print("| arch | run | volume | tile input -> output | tiles (batch) | tile voxels / volume "
          "voxels | s | volume voxels/s | time / faster bare time |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{1 + r['overhead']:.3f}"
        print(
            f"| {r['arch']} | {r['run']} | {r['volume']} | {r['tile']} | {r['tiles']} "
            f"({r['batch']}) | {r['redundancy']:.2f} | {r['seconds']:.2f} | "
            f"{r['voxels_per_s']:,.0f} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
