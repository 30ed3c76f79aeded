"""Learning curves against wall clock: train recipe variants one after another, then tabulate.

    # train each variant alone on the machine (one after another), then print the table
    .venv/bin/python benchmarks/curves.py --minutes 14 \
        --variant "patch=" \
        --variant "dense=train.mode=dense train.learning_rate=0.001 sampler.batch_size=4"
    # only the table, from runs already made
    .venv/bin/python benchmarks/curves.py --report runs/probe-patch runs/probe-dense-a

Each variant is ``NAME=OVERRIDES`` (space-separated ``key=value`` recipe overrides, added
to ``--set`` options common to all). Variants run with ``emkit recipe run RECIPE``,
output ``runs/curves-<NAME>``, a training budget of ``--minutes`` and a validation every
``--validate-minutes`` (turned into steps from a first measured step rate is not
reliable on a noisy machine, so give ``validate_every`` per variant if you care).

The table reads each run's MLflow history: every validation's training minutes
(``val_train_minutes``), pixel error and ISBI V_rand of the map, Rand full and adapted
Rand error of the segmentation with the recipe's postprocessing options; steps per
second and labelled output voxels per second (batch x the output of ``model.keras``,
or of ``train.dense_output`` in dense mode); and, where the run tuned its
postprocessing, the held-out score before and after tuning.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KEYS = ("pixel_error", "v_rand", "rand_error", "adapted_rand_error")


def run_variant(recipe: str, name: str, overrides: list[str], common: list[str],
                minutes: float, root: Path) -> Path:
    out = root / f"curves-{name}"
    cmd = [sys.executable, "-m", "emkit.cli.main", "recipe", "run", recipe, "--output", str(out),
           "--set", f"train.max_minutes={minutes}"]
    for item in [*common, *overrides]:
        cmd += ["--set", item]
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def report(folder: Path) -> dict:
    """The curve and the budget of one run folder, from its MLflow run."""
    import yaml

    from emkit.tracking import metric_history
    from emkit.training import read_state

    state = read_state(folder / "checkpoints")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    uri = recipe["tracking"]["uri"] or os.environ.get("MLFLOW_TRACKING_URI") or \
        "sqlite:///mlruns/mlflow.db"

    def history(key):
        return dict(metric_history(uri, state.run_id, key))

    minutes = history("val_train_minutes")
    if not minutes:  # runs from before val_train_minutes: the loss logger's clock
        elapsed = sorted(history("elapsed_minutes").items())
        for step in history("val_pixel_error") or history("val_adapted_rand_error"):
            before = [m for s, m in elapsed if s <= step]
            if before:
                minutes[step] = before[-1]
    curve = []
    for step, m in sorted(minutes.items()):
        row = {"step": step, "minutes": m}
        for key in KEYS:
            row[key] = history(f"val_{key}").get(step)
        curve.append(row)
    rates = [v for _, v in metric_history(uri, state.run_id, "steps_per_second")]
    rate = sorted(rates)[len(rates) // 2] if rates else float("nan")
    t = recipe["train"]
    batch = recipe["sampler"]["batch_size"]
    pixels = 1  # labelled output voxels per sample: the net's output, or the dense patch
    from emkit.models.saving import load_model

    net = load_model(folder / "model.keras", compile=False)
    shape = t["dense_output"] if t.get("mode") == "dense" else net.output_shape[1:-1]
    for n in shape:
        pixels *= n
    tune = {k: history(k) for k in ("tune_before_rand_error", "tune_after_rand_error",
                                    "tune_before_adapted_rand_error",
                                    "tune_after_adapted_rand_error")}
    return {"folder": folder, "steps": state.step, "minutes": state.elapsed_minutes,
            "mode": t.get("mode", "patch"), "lr": t["learning_rate"], "batch": batch,
            "pixels_per_step": batch * pixels, "steps_per_second": rate, "curve": curve,
            "tune": {k: next(iter(v.values())) for k, v in tune.items() if v}}


def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def print_tables(results: list[dict]) -> None:
    print("| run | mode | lr | batch | steps | train min | median steps/s | labelled px/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['folder'].name} | {r['mode']} | {r['lr']:g} | {r['batch']} | {r['steps']} | "
              f"{r['minutes']:.1f} | {r['steps_per_second']:.2f} | "
              f"{r['steps_per_second'] * r['pixels_per_step']:,.0f} |")
    print()
    print("| run | step | train min | pixel error | V_rand | Rand full | adapted Rand error |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for row in r["curve"]:
            print(f"| {r['folder'].name} | {row['step']} | {row['minutes']:.1f} | "
                  f"{_fmt(row['pixel_error'])} | {_fmt(row['v_rand'])} | "
                  f"{_fmt(row['rand_error'])} | {_fmt(row['adapted_rand_error'])} |")
    tuned = [r for r in results if r["tune"]]
    if tuned:
        print()
        print("| run | held-out before tuning | held-out after tuning |")
        print("|---|---|---|")
        for r in tuned:
            t = r["tune"]
            key = "rand_error" if "tune_after_rand_error" in t else "adapted_rand_error"
            print(f"| {r['folder'].name} | {key} {_fmt(t.get(f'tune_before_{key}'))} | "
                  f"{_fmt(t.get(f'tune_after_{key}'))} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="isbi_n4")
    parser.add_argument("--minutes", type=float, default=14)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES")
    parser.add_argument("--set", dest="common", action="append", default=[],
                        metavar="KEY=VALUE", help="overrides for every variant")
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--report", nargs="+", type=Path, metavar="RUN",
                        help="only tabulate these finished run folders")
    args = parser.parse_args(argv)
    folders = list(args.report or [])
    if not folders:
        for spec in args.variant:
            name, _, text = spec.partition("=")
            folders.append(run_variant(args.recipe, name, shlex.split(text), args.common,
                                       args.minutes, args.root))
    print_tables([report(f) for f in folders])
    return 0


if __name__ == "__main__":
    sys.exit(main())
