"""Training speed of a pooled net, patchwise against dense, in float32 and bfloat16, on this machine.

    .venv/bin/python benchmarks/train_speed.py [--recipe isbi_n4] [--seconds 20]

For each setting it builds the recipe's network the way ``emkit recipe run`` does
(:func:`emkit.recipes.build.build_network`, and :func:`~emkit.recipes.build.build_trainer`
for ``train.mode: dense``), then times ``train_on_batch`` of Adam and emkit's loss on one
random batch already in memory (no sampling, no augmentation) for ``--seconds`` after two
warm-up steps. It prints a Markdown table of steps/s and labelled output pixels/s
(batch x output pixels per step), and each setting's ratio to the first row, measured in
the same process a minute apart: compare ratios, not absolute rates, on a noisy machine.

``bfloat16`` is Keras' ``mixed_bfloat16`` policy (``train.mixed_precision: bfloat16``);
on a CPU it pays only where oneDNN has bfloat16 kernels (AVX512-BF16 or AMX).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SETTINGS = (  # name, overrides
    ("patch, batch 16", ["train.mode=patch", "sampler.batch_size=16"]),
    ("dense 32x32, batch 4", ["train.mode=dense", "train.dense_output=[32, 32]",
                              "sampler.batch_size=4"]),
    ("dense 64x64, batch 1", ["train.mode=dense", "train.dense_output=[64, 64]",
                              "sampler.batch_size=1"]),
)


def time_setting(recipe_name: str, overrides: list[str], precision: str, seconds: float):
    import keras

    from emkit.recipes import build, load_recipe

    recipe = load_recipe(recipe_name, [*overrides, f"train.mixed_precision={precision}"])
    plan = build.device_plan(recipe)
    net = build.build_network(recipe, plan)
    model = build.build_trainer(recipe, net, plan) if build.exporter(recipe, net).net \
        else net
    batch = recipe.sampler.batch_size
    rng = np.random.default_rng(0)
    x = rng.random((batch, *model.input_shape[1:]), dtype=np.float32)
    y = (rng.random((batch, *model.output_shape[1:])) > 0.5).astype(np.float32)
    for _ in range(2):
        model.train_on_batch(x, y)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.train_on_batch(x, y)
        steps += 1
    rate = steps / (time.perf_counter() - start)
    pixels = int(np.prod(model.output_shape[1:-1])) * batch
    keras.backend.clear_session()
    return rate, rate * pixels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="isbi_n4")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--precisions", nargs="+", default=["none", "bfloat16"])
    args = parser.parse_args(argv)
    rows = []
    for precision in args.precisions:
        for name, overrides in SETTINGS:
            rate, pixels = time_setting(args.recipe, overrides, precision, args.seconds)
            rows.append((name, "float32" if precision == "none" else precision, rate, pixels))
            print(f"{name} {precision}: {rate:.2f} steps/s", file=sys.stderr, flush=True)
    base = rows[0][3]
    print(f"| {args.recipe}: setting | precision | steps/s | labelled px/s | px/s vs first row |")
    print("|---|---|---:|---:|---:|")
    for name, precision, rate, pixels in rows:
        print(f"| {name} | {precision} | {rate:.2f} | {pixels:,.0f} | {pixels / base:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
