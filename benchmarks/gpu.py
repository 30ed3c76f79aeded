"""A device check: training speed in float32 and mixed precision, and a recipe trained for M minutes.

    KERAS_BACKEND=jax python benchmarks/gpu.py speed [--seconds 3] [--budget-minutes 2]
    KERAS_BACKEND=jax python benchmarks/gpu.py train isbi_n4 --minutes 4 --out runs/gpu-n4 \\
        [--data-root DIR] [--steps N] [--set sampler.workers=8 ...]

``speed`` prints the devices found, then a Markdown table of training steps/s (Adam +
emkit's ChannelBCE through ``model.fit``, one synthetic batch already in memory, no
sampling) for N4 (batch 16, 95x95), the 2D U-Net of recipe ``isbi_unet`` (batch 4) and
the 3D residual U-Net (batch 1, 18x160x160), each in float32, bfloat16 and float16
mixed precision, and dense N4 inference (``emkit.inference.predict_volume``, output
voxels/s). Each number times ``--seconds`` of steps after two warm-up steps (the
compilation); rows left when ``--budget-minutes`` have passed are skipped.

``train`` trains a recipe's model with emkit's sampler, ``fit`` loop, budget and
checkpoints (:mod:`emkit.recipes.build`, :mod:`emkit.training`) for ``--minutes``, with
no MLflow: it writes ``OUT/model.keras``, ``OUT/checkpoints/`` and ``OUT/train.json``
(the devices, the loss every ``train.log_every`` steps, steps/s, and the final
validation scores unless ``--no-validate``). Run it again with the same ``--out`` to
continue from ``OUT/checkpoints/last.keras`` for ``--minutes`` more. Augmentations that
need albumentations are left out, with a note, where it is not installed.

Only Keras, a backend (JAX, TensorFlow or PyTorch) and emkit's numeric stack are needed:
no MLflow, Optuna, albumentations, Zarr or Dask.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import keras
import numpy as np

from emkit.recipes import load_recipe
from emkit.training import devices

PRECISIONS = ("none", "bfloat16", "float16")
LABELS = {"none": "float32", "bfloat16": "bfloat16", "float16": "float16"}


# --------------------------------------------------------------------------- speed


def _speed_cases(quick: bool) -> dict:
    """Case -> (architecture, spec overrides, batch size)."""
    from emkit.recipes.loading import model_overrides

    unet = model_overrides(load_recipe("isbi_unet"))
    if quick:  # a CPU check of the script itself
        return {
            "n4": ("n4", {"width_factor": 1 / 24}, 4),
            "unet2d": ("unet2d", {"base_filters": 2, "depth": 2, "input_shape": (44, 44)}, 2),
            "rsunet": ("rsunet", {"widths": (2, 3, 4), "input_shape": (4, 16, 16)}, 1),
        }
    return {
        "n4": ("n4", {}, 16),
        "unet2d": ("unet2d", unet, 4),
        "rsunet": ("rsunet", {"input_shape": (18, 160, 160)}, 1),
    }


class _Repeat(keras.utils.PyDataset):
    """One in-memory batch, ``length`` times."""

    def __init__(self, batch, length: int):
        super().__init__()
        self.batch, self.length = batch, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.batch


class _StepTimer(keras.callbacks.Callback):
    """Times the steps after ``warmup`` steps for about ``seconds``, then stops ``fit``."""

    def __init__(self, warmup: int, seconds: float, max_steps: int | None = None):
        super().__init__()
        self.warmup, self.seconds, self.max_steps = warmup, seconds, max_steps
        self.count, self.start, self.steps, self.elapsed, self.loss = 0, None, 0, 0.0, math.nan

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.warmup:
            _loss(logs)  # waits for the device
            self.start = time.perf_counter()
            return
        if self.start is None:
            return
        done = self.count - self.warmup
        if (time.perf_counter() - self.start >= self.seconds
                or (self.max_steps is not None and done >= self.max_steps)):
            self.loss = _loss(logs)
            self.elapsed, self.steps = time.perf_counter() - self.start, done
            self.model.stop_training = True


def _loss(logs) -> float:
    value = (logs or {}).get("loss", math.nan)
    return float(keras.ops.convert_to_numpy(value))


def _synthetic_batch(model, batch_size: int, seed: int = 0):
    from emkit.models import model_geometry

    geometry = model_geometry(model)
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, *geometry.input_shape, geometry.in_channels), dtype=np.float32)
    y = (rng.random((batch_size, *geometry.output_shape, geometry.out_channels)) > 0.5)
    y = y.astype(np.float32)
    return x, y, np.ones_like(y)


def time_training(arch: str, overrides: dict, batch_size: int, mixed_precision: str, *,
                  plan_devices_value="auto", seconds: float, max_steps: int | None = None) -> dict:
    """Steps/s of ``fit`` on one synthetic batch, after 2 warm-up steps."""
    from emkit.models import build_model, get_spec
    from emkit.training import compile_model

    plan = devices.plan_devices(plan_devices_value, batch_size=batch_size,
                                mixed_precision=mixed_precision)
    keras.utils.set_random_seed(0)
    with devices.precision(mixed_precision), plan.model_scope():
        model = compile_model(build_model(get_spec(arch, **overrides)))
    batch = _synthetic_batch(model, batch_size)
    timer = _StepTimer(2, seconds, max_steps)
    with plan.run_scope():
        model.fit(_Repeat(batch, 1_000_000), epochs=1, verbose=0, callbacks=[timer])
    steps_per_s = timer.steps / timer.elapsed if timer.elapsed else math.nan
    return {"steps_per_s": steps_per_s, "samples_per_s": steps_per_s * batch_size,
            "loss": timer.loss, "steps": timer.steps, "params": model.count_params(),
            "input": list(batch[0].shape[1:-1]), "replicas": plan.replicas}


def time_dense_n4(mixed_precision: str, shape, *, quick: bool) -> dict:
    """Output voxels/s of ``predict_volume`` with N4's dense form on a random uint8 volume."""
    from emkit.inference import predict_volume
    from emkit.models import build_model, get_spec

    keras.utils.set_random_seed(0)
    with devices.precision(mixed_precision):
        model = build_model(get_spec("n4", **({"width_factor": 1 / 24} if quick else {})))
    raw = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    predict_volume(model, raw, progress=False, batch_size=4)  # compiles every batch shape
    start = time.perf_counter()
    pred = predict_volume(model, raw, progress=False, batch_size=4)
    elapsed = time.perf_counter() - start
    return {"voxels_per_s": raw.size / elapsed, "seconds": elapsed, "shape": list(shape),
            "finite": bool(np.isfinite(pred).all())}


def run_speed(args) -> dict:
    started = time.monotonic()
    print(devices.environment_summary(), flush=True)
    precisions = args.precisions
    results = {"environment": devices.describe(), "training": {}, "inference": {}}
    cases = _speed_cases(args.quick)
    shape = tuple(args.infer_shape) if args.infer_shape else ((1, 128, 128) if args.quick
                                                             else (8, 1024, 1024))
    # N4's training and dense inference first, then the larger (slower to compile) nets.
    jobs = [("training", f"{case}/{LABELS[mp]}", case, mp) for case in ("n4",) for mp in precisions]
    jobs += [("inference", f"n4_dense/{LABELS[mp]}", "n4", mp) for mp in precisions]
    jobs += [("training", f"{case}/{LABELS[mp]}", case, mp) for case in cases if case != "n4"
             for mp in precisions]
    for section, key, case, mp in jobs:
        if (time.monotonic() - started) / 60 > args.budget_minutes:
            results[section][key] = {"skipped": "budget"}
            continue
        t0 = time.monotonic()
        try:
            if section == "training":
                arch, overrides, batch_size = cases[case]
                row = time_training(arch, overrides, batch_size, mp, seconds=args.seconds,
                                    max_steps=args.steps, plan_devices_value=args.devices)
            else:
                row = time_dense_n4(mp, shape, quick=args.quick)
        except Exception as error:  # noqa: BLE001 - a device check reports every failure
            row = {"error": f"{type(error).__name__}: {_first_line(error)}"}
        row["wall_s"] = time.monotonic() - t0
        results[section][key] = row
        print(f"  {key}: {_fmt_row(row)}", flush=True)
        keras.backend.clear_session()
    results["minutes"] = (time.monotonic() - started) / 60
    print()
    print(speed_table(results, precisions, cases))
    print(f"\n{results['minutes']:.1f} minutes")
    return results


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


def _fmt_row(row: dict) -> str:
    if "error" in row:
        return row["error"]
    if "voxels_per_s" in row:
        return f"{row['voxels_per_s']:.3g} voxels/s ({row['wall_s']:.0f} s with compile)"
    return (f"{row['steps_per_s']:.3g} steps/s, loss {row['loss']:.4f}, {row['steps']} steps "
            f"({row['wall_s']:.0f} s with compile)")


def speed_table(results: dict, precisions, cases) -> str:
    """The Markdown table: one row per model, one column per precision (speed-up in brackets)."""
    head = "| model | input | batch | " + " | ".join(f"{LABELS[p]}" for p in precisions) + " |"
    lines = [head, "|" + "---|" * (3 + len(precisions))]

    def cell(row, base, unit_key):
        if row is None or "skipped" in row:
            return "skipped"
        if "error" in row:
            return "error: " + row["error"].split(":")[0]
        value = row[unit_key]
        text = f"{value:.3g}"
        if base and base.get(unit_key) and row is not base:
            text += f" ({value / base[unit_key]:.2f}x)"
        if unit_key == "steps_per_s" and not math.isfinite(row.get("loss", math.nan)):
            text += " (loss not finite)"
        return text

    for case, (arch, _, batch_size) in cases.items():
        rows = [results["training"].get(f"{case}/{LABELS[p]}") for p in precisions]
        base = rows[0] if rows[0] and "steps_per_s" in rows[0] else None
        shape = next((r["input"] for r in rows if r and "input" in r), [])
        lines.append(f"| {case} train steps/s | {'x'.join(map(str, shape))} | {batch_size} | "
                     + " | ".join(cell(r, base, "steps_per_s") for r in rows) + " |")
    rows = [results["inference"].get(f"n4_dense/{LABELS[p]}") for p in precisions]
    base = rows[0] if rows[0] and "voxels_per_s" in rows[0] else None
    shape = next((r["shape"] for r in rows if r and "shape" in r), [])
    lines.append(f"| n4 dense inference voxels/s | {'x'.join(map(str, shape))} | 4 tiles | "
                 + " | ".join(cell(r, base, "voxels_per_s") for r in rows) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- train


class JsonLog:
    """The small tracker that :class:`~emkit.training.LossLogger` writes to: ``train.json``."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record

    def log_metrics(self, metrics: dict, *, step: int) -> None:
        self.record["log"].append({"step": int(step), **{k: float(v) for k, v in metrics.items()}})
        self.save()

    def log_image(self, image, *, key: str, step: int) -> None:  # no images without a tracker
        pass

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.record, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


def _without_albumentations(recipe):
    """The recipe without the augmentations that need albumentations, where it is missing."""
    import dataclasses

    from emkit.augment.catalog import AUGMENTATIONS

    if importlib.util.find_spec("albumentations") is not None:
        return recipe, []
    keep, dropped = [], []
    for entry in recipe.sampler.augment:
        name = entry["name"] if isinstance(entry, dict) else entry
        cls = AUGMENTATIONS.get(name)
        (dropped if cls is not None and cls.__module__ == "emkit.augment.intensity"
         else keep).append(entry)
    sampler = dataclasses.replace(recipe.sampler, augment=keep)
    return dataclasses.replace(recipe, sampler=sampler), [
        e["name"] if isinstance(e, dict) else e for e in dropped]


def _train_aligner(recipe, args) -> dict:
    """An align recipe (``task: align``): :func:`emkit.recipes.align_run.train_aligner`, with
    the in-memory tracker, resumed when ``--out`` holds a run; writes ``train.json``."""
    from emkit.recipes.align_run import train_aligner
    from emkit.tracking import MemoryTracker
    from emkit.training import read_state

    out = Path(args.out)
    if args.minutes is not None:
        recipe.train.max_minutes = args.minutes
    if args.steps is not None:
        recipe.train.max_steps = args.steps
    resume = read_state(out) is not None
    print(devices.environment_summary(), flush=True)
    start = time.monotonic()
    tracker = MemoryTracker()
    result = train_aligner(recipe, output=out, resume=resume, tracker=tracker, verbose=0)
    seconds = time.monotonic() - start
    record = {"recipe": recipe.name, "steps": result.steps, "seconds": seconds,
              "stopped": result.stopped, "metrics": result.metrics,
              "devices": devices.describe(), "resumed": result.resumed}
    (out / "train.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"{recipe.name}: {result.steps} steps in {seconds:.0f} s ({result.stopped}); "
          f"{result.metrics}", flush=True)
    return record


def run_train(args) -> dict:
    from emkit.recipes import build
    from emkit.training import (
        Budget,
        Checkpoints,
        Clock,
        LossLogger,
        TrainState,
        fit_steps,
        global_step,
        load_checkpoint,
        read_state,
    )
    from emkit.training.fit import saved_mixed_precision

    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.mixed_precision:
        overrides.append(f"train.mixed_precision={args.mixed_precision}")
    loaded = load_recipe(args.recipe, overrides)
    if getattr(loaded, "task", None) == "align":
        return _train_aligner(loaded, args)
    recipe, dropped = _without_albumentations(loaded)
    out = Path(args.out)
    checkpoints_dir = out / "checkpoints"
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    log_path = out / "train.json"
    state = read_state(checkpoints_dir)
    last = checkpoints_dir / "last.keras"
    resumed = state is not None and last.exists()
    plan = build.device_plan(recipe)
    if resumed:  # a checkpoint keeps the dtype policy it was trained with
        plan = plan.with_mixed_precision(saved_mixed_precision(last))
    print(devices.environment_summary(), flush=True)
    print(f"{recipe.name}: {plan.strategy} on {', '.join(plan.devices)}, "
          f"{plan.dtype_policy}, global batch {plan.batch_size}"
          + (f"; resuming at step {state.step}" if resumed else ""), flush=True)
    if dropped:
        print(f"albumentations is not installed: left out augmentations {dropped}", flush=True)
    record = json.loads(log_path.read_text()) if resumed and log_path.exists() else {
        "recipe": recipe.name, "overrides": overrides, "log": [], "sessions": []}
    record["devices"] = devices.describe(plan)
    record["dropped_augmentations"] = dropped
    log = JsonLog(log_path, record)

    setup = time.monotonic()
    data = build.prepare_data(recipe)
    if not resumed:
        state = TrainState(run_id="benchmarks-gpu", recipe=recipe.name)
    with plan.run_scope():
        model = load_checkpoint(last, plan=plan) if resumed else build.build_network(recipe, plan)
        sampler = build.make_sampler(recipe, data, model)
        t = recipe.train
        clock = Clock(state.elapsed_minutes)
        max_steps = state.step + args.steps if args.steps else t.max_steps
        budget = Budget(max_steps, state.elapsed_minutes + args.minutes, clock)
        checkpoints = Checkpoints(checkpoints_dir, state, t.checkpoint_every, clock,
                                  best_metric=t.best_metric, best_mode=t.best_mode)
        first_step = state.step
        train_start = time.monotonic()
        fit_steps(model, sampler, max_steps=max_steps, steps_done=state.step,
                  checkpoints=checkpoints,
                  callbacks=[budget, LossLogger(log, min(t.log_every, 50), clock), checkpoints])
        train_seconds = time.monotonic() - train_start
        checkpoints.set_model(model)
        checkpoints.save()
        step = global_step(model)
        session = {"first_step": first_step, "last_step": step, "train_seconds": train_seconds,
                   "setup_seconds": train_start - setup, "stopped": budget.reason or "",
                   "steps_per_s": (step - first_step) / train_seconds if train_seconds else None}
        record["sessions"].append(session)
        model.save(out / "model.keras")
        if not args.no_validate:
            start = time.monotonic()
            result = build.ValidationPipeline(recipe, data).run(plan.inference_model(model))
            record["validation"] = {"step": step, "seconds": time.monotonic() - start,
                                    **{k: v for k, v in result.metrics.items()
                                       if isinstance(v, (int, float))}}
    log.save()
    losses = [e["train_loss"] for e in record["log"] if "train_loss" in e]
    print(f"steps {first_step} -> {step} in {train_seconds:.0f} s "
          f"({session['steps_per_s'] or 0:.3g} steps/s, {budget.reason or 'done'}); "
          f"last loss {losses[-1] if losses else float('nan'):.4f}", flush=True)
    if "validation" in record:
        v = record["validation"]
        print("validation: " + ", ".join(f"{k} {v[k]:.4f}" for k in
                                         ("rand_error", "adapted_rand_error", "pixel_error",
                                          "v_rand", "cremi_score") if v.get(k) is not None))
    print(f"wrote {out / 'model.keras'}, {log_path}")
    return record


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    speed = sub.add_parser("speed", help="steps/s in float32 and mixed precision")
    speed.add_argument("--seconds", type=float, default=3.0, help="timed seconds per number")
    speed.add_argument("--steps", type=int, help="at most this many timed steps per number")
    speed.add_argument("--budget-minutes", type=float, default=2.0,
                       help="skip the rows left after this many minutes")
    speed.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    speed.add_argument("--devices", default="auto", help="train.devices: auto, cpu or N")
    speed.add_argument("--infer-shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                       help="volume of the dense N4 inference (default 8 1024 1024)")
    speed.add_argument("--quick", action="store_true", help="tiny models (a CPU check)")
    speed.add_argument("--json", help="also write the results here")
    train = sub.add_parser("train", help="train a recipe for some minutes, no MLflow")
    train.add_argument("recipe", help="a shipped recipe's name or a YAML file")
    train.add_argument("--out", required=True, help="output folder (resumed when it has one)")
    train.add_argument("--minutes", type=float, default=4.0, help="training minutes this time")
    train.add_argument("--steps", type=int, help="at most this many steps this time")
    train.add_argument("--data-root", help="data.root of the recipe")
    train.add_argument("--mixed-precision", choices=PRECISIONS, help="train.mixed_precision")
    train.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    train.add_argument("--no-validate", action="store_true", help="skip the final validation")
    args = parser.parse_args(argv)
    if args.mode == "speed":
        if args.devices not in devices.DEVICE_WORDS:
            args.devices = int(args.devices)
        results = run_speed(args)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    else:
        run_train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
