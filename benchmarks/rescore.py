"""Score a finished run's model again, with and without test-time augmentation, tuning held out.

    .venv/bin/python benchmarks/rescore.py runs/isbi_n4-<time> [--trials 60] [--no-tta]

For the run folder's ``model.keras`` and its recipe (``recipe.yaml``, whose
``postprocess.options`` are the base options, i.e. the tuned ones if the run kept them),
it predicts the validation sections plain and with test-time augmentation (the 8 flips
and transposes of :func:`emkit.inference.predict_volume`), and for each prediction prints
the map's pixel error and ISBI V_rand/V_info, the segmentation's score with the base
options, and the cross-fitted held-out score after tuning
(:func:`emkit.tune.heldout.tune_heldout`, in-memory studies), with the seconds each took.
One process, one model: the rows compare like with like.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("--trials", type=int, default=60, help="trials per tuning study")
    parser.add_argument("--no-tta", action="store_true", help="only the plain prediction")
    args = parser.parse_args(argv)

    from emkit.models.saving import load_model
    from emkit.recipes import load_recipe
    from emkit.recipes.build import ValidationPipeline, prepare_data
    from emkit.tune.heldout import tune_heldout

    recipe = load_recipe(args.run / "recipe.yaml")
    data = prepare_data(recipe)
    validate = ValidationPipeline(recipe, data)
    model = load_model(args.run / "model.keras", compile=False)
    p = recipe.postprocess
    rows = []
    for tta in ([False] if args.no_tta else [False, True]):
        start = time.perf_counter()
        result = validate.run(model, tta=tta)
        seconds = time.perf_counter() - start
        tuning = tune_heldout(result.pred, validate.labels, method=p.method,
                              scored_sections=data.scored_sections, base_options=p.options,
                              n_trials=args.trials, metric=p.tune_metric,
                              voxel_size_nm=data.dataset.voxel_size_nm,
                              storage="sqlite:///:memory:", seed=recipe.run.seed,
                              progress=False)
        m, k = result.metrics, tuning.metric
        rows.append((tta, seconds, m, tuning, k))
        print(f"done: tta={tta}", file=sys.stderr, flush=True)
    print("| prediction | predict s | pixel error | V_rand | V_info | metric | base options "
          "(all sections) | held out: base | held out: tuned | in-sample tuned |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tta, seconds, m, tuning, k in rows:
        def fmt(key, m=m):
            return "-" if m.get(key) is None else f"{m[key]:.4f}"

        print(f"| {'TTA x8' if tta else 'plain'} | {seconds:.0f} | {fmt('pixel_error')} | "
              f"{fmt('v_rand')} | {fmt('v_info')} | {k} | {fmt(k)} | {tuning.before[k]:.4f} | "
              f"{tuning.after[k]:.4f} | {tuning.in_sample:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
