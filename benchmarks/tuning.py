"""Postprocessing before and after Optuna tuning, with a held-out check.

    .venv/bin/python benchmarks/tuning.py runs/acc-isbi_n4 runs/acc-isbi_vd2d ... [--n-trials 60]

For each finished run folder it reads the validation prediction that training left in
``outputs/validation.h5`` (nothing is re-predicted) and reports the main metric
(Rand F-score for boundary recipes, adapted Rand error for affinity recipes):

* ``recipe``: the recipe's own postprocess options on all validation sections;
* ``tuned (all)``: tuned and scored on all validation sections, which is what
  ``emkit tune watershed`` reports: optimistic, the options saw the scored sections;
* ``held-out``: tuned on the first sections (all but the last ``--holdout``) and
  scored on the last ones, beside the recipe's options on the same held-out sections.

Studies go to an in-memory Optuna storage (``sqlite:///:memory:``), so this leaves no
trace in ``mlruns/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np


def segment_and_score(pred, gt, method, options, metric, offsets=None):
    from emkit.metrics import evaluate
    from emkit.postprocess import segment_affinities, watershed_2d

    if method == "watershed_2d":
        seg = watershed_2d(pred[..., 0], **options)
    else:
        options = dict(options)
        thresholds = options.pop("thresholds", [0.5])
        seg = segment_affinities(pred, thresholds=thresholds[:1], offsets=offsets, **options)[0]
    return evaluate(seg, gt, pred_kind="segmentation", metrics=(metric,))[metric]


def tune_folder(folder: Path, n_trials: int, holdout: int) -> dict:
    import h5py

    from emkit.recipes import load_recipe
    from emkit.recipes.build import ValidationPipeline, prepare_data
    from emkit.tune.postprocess import tune_postprocess

    recipe = load_recipe(folder / "recipe.yaml")
    pipeline = ValidationPipeline(recipe, prepare_data(recipe))
    with h5py.File(folder / "outputs" / "validation.h5", "r") as f:
        pred = f["pred"][...]
    pred = pred[..., None] if pred.ndim == 3 else np.moveaxis(pred, 0, -1)
    gt = pipeline.labels
    method = recipe.postprocess.method
    base = dict(recipe.postprocess.options)
    metric = "rand_error" if method == "watershed_2d" else "adapted_rand_error"
    offsets = None if recipe.sampler.offsets is None else [tuple(o) for o in recipe.sampler.offsets]
    common = {"method": method, "n_trials": n_trials, "metric": metric, "base_options": base,
              "storage": "sqlite:///:memory:", "offsets": offsets, "progress": False}
    everything = tune_postprocess(pred, gt, **common)
    if method != "watershed_2d":  # 3D: no per-section split of one volume's segmentation
        return {"run": folder.name, "metric": metric, "recipe": everything.default_value,
                "tuned_all": everything.best_value, "options": everything.best_options}
    k = len(gt) - holdout
    fit = tune_postprocess(pred[:k], gt[:k], **common)
    return {
        "run": folder.name, "metric": metric, "recipe": everything.default_value,
        "tuned_all": everything.best_value, "options": everything.best_options,
        "holdout_recipe": segment_and_score(pred[k:], gt[k:], method, base, metric),
        "holdout_tuned": segment_and_score(pred[k:], gt[k:], method, fit.best_options, metric),
        "holdout_options": fit.best_options,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n-trials", type=int, default=60)
    parser.add_argument("--holdout", type=int, default=2, help="sections scored, not tuned on")
    args = parser.parse_args(argv)
    print("| run | metric | recipe options | tuned on all (optimistic) | held-out: recipe |"
          " held-out: tuned on the rest | options (tuned on all) |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.runs:
        r = tune_folder(folder, args.n_trials, args.holdout)
        options = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in r["options"].items())
        held = (f"{r['holdout_recipe']:.4f} | {r['holdout_tuned']:.4f}"
                if "holdout_recipe" in r else "- | -")
        print(f"| {r['run']} | {r['metric']} | {r['recipe']:.4f} | {r['tuned_all']:.4f} | "
              f"{held} | {options} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
