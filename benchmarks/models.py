"""Training and inference speed of N4, the 2D U-Net and the 3D residual U-Net.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/models.py

Prints a Markdown table for the ``## Models`` section of BENCHMARKS.md: train
steps/s (one Adam step on a batch already in memory, no data loading) and
inference voxels/s (output voxels per second of ``predict_on_batch``), for the
registered architectures at full width, and the speed-up of N4's dense form
over sliding the patch classifier. Each number is the median of a few timed
repeats after warm-up steps; a run takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

import keras
import numpy as np

from emkit.models import shapes
from emkit.models.architectures import build_model
from emkit.models.convnet.dense import dense_model


def _timed(fn, *, warmup: int, repeats: int) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batch(model, batch_size: int, seed: int = 0):
    geometry = shapes.model_geometry(model)
    rng = np.random.default_rng(seed)
    raw = rng.random((batch_size, *geometry.input_shape, geometry.in_channels), dtype=np.float32)
    target = (rng.random((batch_size, *geometry.output_shape, geometry.out_channels)) > 0.5).astype(
        "float32"
    )
    return raw, target


def bench_train(name: str, input_shape, batch_size: int, repeats: int, warmup: int = 2) -> dict:
    keras.utils.set_random_seed(0)
    model = build_model(name, input_shape=input_shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    raw, target = _batch(model, batch_size)
    seconds = _timed(lambda: model.train_on_batch(raw, target), warmup=warmup, repeats=repeats)
    geometry = shapes.model_geometry(model)
    return {
        "params": model.count_params(),
        "patch": f"{batch_size} x {_fmt(geometry.input_shape)} -> {_fmt(geometry.output_shape)}",
        "steps_per_s": 1.0 / seconds,
        "voxels_per_s": batch_size * np.prod(geometry.output_shape) / seconds,
    }


def bench_predict(model, batch_size: int, repeats: int) -> dict:
    raw, _ = _batch(model, batch_size, seed=1)
    seconds = _timed(lambda: model.predict_on_batch(raw), warmup=1, repeats=repeats)
    geometry = shapes.model_geometry(model)
    return {
        "patch": f"{batch_size} x {_fmt(geometry.input_shape)} -> {_fmt(geometry.output_shape)}",
        "voxels_per_s": batch_size * np.prod(geometry.output_shape) / seconds,
        "seconds": seconds,
    }


def _fmt(shape) -> str:
    return "x".join(str(v) for v in shape)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per number (median)")
    args = parser.parse_args(argv)
    r = args.repeats
    rows = []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()

    def row(arch, task, result, note=""):
        rows.append(
            (arch, task, result["patch"], result.get("steps_per_s"), result["voxels_per_s"], note)
        )
        print(
            f"  {arch:7s} {task:28s} {result['patch']:34s} {result['voxels_per_s']:12.0f} voxels/s",
            file=sys.stderr,
        )

    # N4: trained as a patch classifier (95x95 -> 1 pixel), applied densely.
    n4_train = bench_train("n4", (95, 95), batch_size=16, repeats=r * 5)
    row("n4", "train", n4_train, f"{n4_train['params']:,} params")
    n4 = build_model("n4", input_shape=(95, 95))
    patchwise = bench_predict(n4, batch_size=256, repeats=r)
    row("n4", "inference, patch by patch", patchwise, "256 windows of 95x95 per pass")
    dense = bench_predict(dense_model(n4, output_shape=(512, 512)), batch_size=1, repeats=r)
    speedup = dense["voxels_per_s"] / patchwise["voxels_per_s"]
    row(
        "n4",
        "inference, dense form",
        dense,
        f"one 512x512 slice per pass; {speedup:.0f}x patch by patch",
    )

    # The 2D U-Net of Ronneberger et al. (valid convs, 64 maps, 31M parameters).
    unet_train = bench_train("unet2d", (252, 252), batch_size=4, repeats=r, warmup=1)
    row("unet2d", "train", unet_train, f"{unet_train['params']:,} params")
    unet = build_model("unet2d", input_shape=(572, 572))
    row(
        "unet2d", "inference", bench_predict(unet, batch_size=1, repeats=r), "paper tile 572 -> 388"
    )

    # The 3D residual symmetric U-Net of Lee et al. 2017 (same padding).
    # About a minute per step on 2 cores: one warm-up step and fewer repeats.
    rsunet_train = bench_train(
        "rsunet", (18, 160, 160), batch_size=1, repeats=max(1, r // 3), warmup=1
    )
    row("rsunet", "train", rsunet_train, f"{rsunet_train['params']:,} params")
    rsunet = build_model("rsunet", input_shape=(18, 160, 160))
    row(
        "rsunet",
        "inference",
        bench_predict(rsunet, batch_size=1, repeats=r),
        "paper patch 18x160x160",
    )

    import tensorflow as tf  # only for the version line

    print(
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), Keras {keras.__version__}, "
        f"backend {keras.backend.backend()}, tensorflow {tf.__version__}; median of {r} timed "
        f"repeats ({max(1, r // 3)} for rsunet train); load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; {time.perf_counter() - start:.0f} s in all.\n"
    )
    print("| arch | task | batch x input -> output | train steps/s | voxels/s | notes |")
    print("|---|---|---|---:|---:|---|")
    for arch, task, patch, steps, voxels, note in rows:
        steps_text = f"{steps:.2f}" if steps is not None else ""
        print(f"| {arch} | {task} | {patch} | {steps_text} | {voxels:,.0f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
