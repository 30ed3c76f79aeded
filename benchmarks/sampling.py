"""Augmented samples per second of the patch sampler against the models' train step rates.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/sampling.py [--quick]

For each setting (ISBI 2012 in 2D with N4 and with the 2D U-Net; the CREMI C crop,
anisotropic 40 x 8 x 8 nm, in 3D with the 3D U-Net, and optionally the residual U-Net)
it builds the
registered model at the models benchmark's patch size, builds a PatchSampler on the real
data with a full augmentation recipe (below), and measures in one process:

* sampler samples/s with 1 worker (the main thread), 2 threads and 2 processes (Keras'
  PyDataset enqueuer; the first batch, which pays for starting the pool, is not timed);
* the train step rate: one Adam step on a batch already in memory (as
  ``benchmarks/models.py`` does, here with the sampler's weights and a per-channel BCE);
* ``model.fit`` fed by the sampler with 2 threads, steps/s of a second epoch, and the
  share of the in-memory step rate it keeps (sampling and training share the same
  CPU cores here); skipped for models slower than 0.5 steps/s, where sampling is
  hidden behind a step many times longer.

The ratio is best sampler samples/s over the samples/s training consumes (steps/s x
batch); the target is >= 2. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

from emkit.datasets import load_dataset, split_sections
from emkit.models import build_model
from emkit.sampling import PatchSampler

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The recipes: what a training recipe would plausibly ask for.
RECIPE_2D = [
    {"name": "flip", "axes": ["y", "x"]},
    {"name": "rot90"},
    {"name": "elastic", "p": 0.5, "sigma": [0, 4], "spacing": 64},
    {"name": "brightness_contrast", "p": 0.5},
    {"name": "gamma", "p": 0.5},
    {"name": "noise", "p": 0.5},
    {"name": "blur", "p": 0.3, "section_p": 1.0},
    {"name": "missing_region", "p": 0.1},
    {"name": "dark_blotch", "p": 0.1},
]
RECIPE_3D = [
    {"name": "flip"},
    {"name": "rot90"},
    {"name": "elastic", "p": 0.5, "sigma": [0, 4], "spacing": 64, "mode": "section"},
    {"name": "misalign", "p": 0.2, "max_shift": 10},
    {"name": "brightness_contrast", "p": 0.5},
    {"name": "gamma", "p": 0.5},
    {"name": "noise", "p": 0.5},
    {"name": "blur", "p": 0.5, "section_p": 0.2},
    {"name": "missing_section", "p": 0.2},
    {"name": "missing_region", "p": 0.1},
    {"name": "dark_blotch", "p": 0.1},
]

# name -> data set, architecture, input window, batch, target, recipe.
SETTINGS = {
    "isbi-n4": ("isbi2012", "n4", (95, 95), 16, "boundaries", RECIPE_2D),
    "isbi-unet2d": ("isbi2012", "unet2d", (252, 252), 4, "boundaries", RECIPE_2D),
    "cremi-unet3d": ("cremi_c_crop", "unet3d", (16, 128, 128), 1, "affinities", RECIPE_3D),
    "cremi-rsunet": ("cremi_c_crop", "rsunet", (18, 160, 160), 1, "affinities", RECIPE_3D),
}
DEFAULT_SETTINGS = "isbi-n4,isbi-unet2d,cremi-unet3d"  # rsunet: about a minute more on 2 cores


def per_channel_bce(y_true, y_pred):
    return keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None])


def sampler_rate(sampler, batches: int, *, workers: int, processes: bool) -> float:
    """Samples/s of ``batches`` batches (after the first) through Keras' enqueuer."""
    sampler.workers, sampler.use_multiprocessing = workers, processes
    if workers <= 1 and not processes:
        sampler[0]
        start = time.perf_counter()
        for i in range(1, batches + 1):
            sampler[i % len(sampler)]
        return batches * sampler.batch_size / (time.perf_counter() - start)
    adapter = PyDatasetAdapter(sampler, shuffle=False)
    adapter.on_epoch_begin()
    iterator = adapter.get_numpy_iterator()
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    adapter.on_epoch_end()
    return batches * sampler.batch_size / seconds


def train_rate(model, batch, seconds: float) -> float:
    """Steps/s: median single Adam step on an in-memory batch, timed for ~``seconds``."""
    x, y, w = batch
    for _ in range(2):  # tracing, then one warm step
        model.train_on_batch(x, y, sample_weight=w)
    times = []
    while len(times) < 3 or (sum(times) < seconds and len(times) < 50):
        start = time.perf_counter()
        model.train_on_batch(x, y, sample_weight=w)
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def fit_rate(model, sampler, steps: int) -> float:
    """Steps/s of the second of two ``fit`` epochs fed by ``sampler`` with 2 threads."""
    sampler.workers, sampler.use_multiprocessing = 2, False
    sampler.batches_per_epoch = steps
    timer = _EpochTimer()
    model.fit(sampler, epochs=2, verbose=0, callbacks=[timer])
    return steps / timer.seconds


def run_setting(name, *, quick: bool, root) -> dict:
    dataset_name, arch, input_shape, batch, target, recipe = SETTINGS[name]
    dataset = load_dataset(dataset_name, root=root)
    sections = split_sections(dataset).train if dataset.validation_sections else None
    keras.utils.set_random_seed(0)
    model = build_model(arch, input_shape=input_shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=per_channel_bce)
    sampler = PatchSampler.from_dataset(
        dataset, model, sections=sections, target=target, augment=recipe, max_defects=1,
        balance=target == "boundaries", batch_size=batch, batches_per_epoch=10_000, seed=0,
    )
    steps_per_s = train_rate(model, sampler[0], seconds=2 if quick else 5)
    consumed = steps_per_s * batch
    # Time each sampler run for roughly 3 s (1 s with --quick) of sampling.
    probe = sampler_rate(sampler, 2, workers=1, processes=False)
    batches = max(3, int((1 if quick else 3) * probe / batch))
    rates = {
        "1 worker": sampler_rate(sampler, batches, workers=1, processes=False),
        "2 threads": sampler_rate(sampler, batches, workers=2, processes=False),
        "2 processes": sampler_rate(sampler, batches, workers=2, processes=True),
    }
    # fit fed by the sampler: only where a step is short enough for sampling to matter
    # (and for the run to stay short); a slow step hides the sampler entirely.
    fed = None
    if steps_per_s >= 0.5:
        fed = fit_rate(model, sampler, max(3, int(steps_per_s * (3 if quick else 8))))
    result = {
        "name": name,
        "arch": arch,
        "patch": f"{batch} x {'x'.join(map(str, sampler.shapes.input_shape))} -> "
                 f"{'x'.join(map(str, sampler.shapes.output_shape))}",
        "read": "x".join(map(str, sampler.plan.raw_shapes[0])),
        "steps_per_s": steps_per_s,
        "consumed": consumed,
        **rates,
        "ratio": max(rates.values()) / consumed,
        "fit_steps_per_s": fed,
        "kept": None if fed is None else fed / steps_per_s,
    }
    print(f"  {name}: {result}", file=sys.stderr)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=DEFAULT_SETTINGS, help=f"comma-separated, from {', '.join(SETTINGS)}"
    )
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument("--root", default=str(SHARED_DATA), help="data root (CREMI crop)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = [run_setting(n, quick=args.quick, root=args.root) for n in args.settings.split(",")]
    import tensorflow as tf

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), Keras {keras.__version__}, "
        f"backend {keras.backend.backend()}, tensorflow {tf.__version__}; load average "
        f"{load_before:.1f} before, {load:.1f} after; run took "
        f"{time.perf_counter() - started:.0f} s.\n"
    )
    print(
        "| setting | model: batch x input -> output | raw read | train steps/s | samples/s "
        "consumed | sampler, 1 worker | 2 threads | 2 processes | ratio (best / consumed) | "
        "fit fed by sampler, steps/s | kept |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['name']} | {r['arch']}: {r['patch']} | {r['read']} | {r['steps_per_s']:.3g} | "
            f"{r['consumed']:.3g} | {r['1 worker']:.3g} | {r['2 threads']:.3g} | "
            f"{r['2 processes']:.3g} | {r['ratio']:.3g}x | "
            + ("skipped | |" if r["kept"] is None else
               f"{r['fit_steps_per_s']:.3g} | {r['kept']:.0%} |")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
