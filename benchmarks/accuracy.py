"""Score finished recipe runs on their validation sections, beside the thesis's Table 3.1.

    .venv/bin/python benchmarks/accuracy.py runs/acc-isbi_n4 runs/acc-isbi_vd2d ...
        [--checkpoint last|best|both] [--markdown]

For each run folder (written by ``emkit recipe run``) it reports the training budget
(steps, wall minutes from ``checkpoints/state.json``) and the validation scores:

* ``last``: the run's own final prediction and segmentation
  (``outputs/validation.h5``), re-scored with the recipe's
  :class:`~emkit.recipes.build.ValidationPipeline` (the code that training used);
* ``best``: ``checkpoints/best.keras`` (best validation ``train.best_metric`` during
  training) predicted, segmented and scored afresh. It was chosen on these same
  sections, so it is an optimistic figure; it is shown to tell a noisy curve from an
  untrained net.

Boundary recipes (ISBI) report pixel error (map thresholded at 0.5), the Rand F-score
full/merge/split of the segmentation (Table 3.1's "Rand - Full/Merge/Split"; higher is
better) and the ISBI 2012 V_rand/V_info of the boundary map (border thinning, best
threshold). Affinity recipes report adapted Rand error, VOI split/merge (bits) and the
CREMI score.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

#: Thesis Table 3.1 (with augmentation): pixel error, Rand full, merge, split.
TABLE_3_1 = {
    "N4 (thesis)": (0.0827646, 0.950296, 0.933164, 0.968069),
    "VD2D (thesis)": (0.0842352, 0.954286, 0.976404, 0.933148),
    "VD2D x5 (thesis)": (0.083214, 0.975745, 0.985624, 0.968843),
}
BOUNDARY_KEYS = ("pixel_error", "rand_error", "rand_merge", "rand_split", "v_rand", "v_info")
AFFINITY_KEYS = ("adapted_rand_error", "voi_split", "voi_merge", "cremi_score")


def score_run(folder: Path, checkpoint: str) -> dict:
    """The run's budget and its validation metrics for ``checkpoint`` ("last" or "best")."""
    import h5py

    from emkit.models.saving import load_model
    from emkit.recipes import load_recipe
    from emkit.recipes.build import ValidationPipeline, prepare_data
    from emkit.training import read_state

    state = read_state(folder / "checkpoints")
    recipe = load_recipe(folder / "recipe.yaml")
    data = prepare_data(recipe)
    pipeline = ValidationPipeline(recipe, data)
    if checkpoint == "last":
        with h5py.File(folder / "outputs" / "validation.h5", "r") as f:
            pred, seg = f["pred"][...], f["seg"][...]
        pred = pred[..., None] if pred.ndim == 3 else np.moveaxis(pred, 0, -1)
        metrics = pipeline.evaluate(pred, seg)
        step = state.step
    else:
        model = load_model(folder / "checkpoints" / "best.keras", compile=False)
        metrics = pipeline.run(model).metrics
        step = state.best_step
    return {"run": folder.name, "recipe": recipe.name, "checkpoint": checkpoint, "step": step,
            "steps": state.step, "minutes": state.elapsed_minutes,
            "target": recipe.sampler.target, **metrics}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of `emkit recipe run`")
    parser.add_argument("--checkpoint", choices=("last", "best", "both"), default="both")
    args = parser.parse_args(argv)
    rows = []
    for folder in args.runs:
        for checkpoint in (("last", "best") if args.checkpoint == "both" else (args.checkpoint,)):
            rows.append(score_run(folder, checkpoint))
            print(f"scored {folder} ({checkpoint})", file=sys.stderr, flush=True)
    boundary = [r for r in rows if r["target"] == "boundaries"]
    if boundary:
        print("| model | checkpoint | steps | train min | pixel error | Rand full | Rand merge |"
              " Rand split | ISBI V_rand | ISBI V_info |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in boundary:
            print(f"| {r['recipe']} | {r['checkpoint']} (step {r['step']}) | {r['steps']} | "
                  f"{r['minutes']:.1f} | " + " | ".join(_fmt(r[k]) for k in BOUNDARY_KEYS) + " |")
        for name, (pe, full, merge, split) in TABLE_3_1.items():
            print(f"| {name} | | | GPU | {pe:.4f} | {full:.4f} | {merge:.4f} | {split:.4f} | - | - |")
    affinity = [r for r in rows if r["target"] != "boundaries"]
    if affinity:
        print("\n| model | checkpoint | steps | train min | adapted Rand error | VOI split |"
              " VOI merge | CREMI score |")
        print("|---|---|---|---|---|---|---|---|")
        for r in affinity:
            print(f"| {r['recipe']} | {r['checkpoint']} (step {r['step']}) | {r['steps']} | "
                  f"{r['minutes']:.1f} | " + " | ".join(_fmt(r[k]) for k in AFFINITY_KEYS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
