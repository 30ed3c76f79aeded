"""``emkit tune``: Optuna studies over the postprocessing and over whole recipes.

    emkit tune watershed RUN_OR_MODEL [--n-trials N] [--metric KEY] [--pareto]
                         [--recipe NAME_OR_PATH] [--set K=V ...] [--root DIR]
                         [--study NAME] [--storage URL] [--seed N] [--thresholds T,T]
                         [--output DIR] [--overwrite] [--tracking-uri URI]
                         [--timeout SECONDS] [--quiet]
    emkit tune recipe NAME --space space.yaml --n-trials N [--set K=V ...] [--quick]
                      [--study NAME] [--storage URL] [--pruner median|hyperband|none]
                      [--metric KEY] [--tracking-uri URI] [--output-root DIR]
                      [--timeout SECONDS] [--seed N] [--root DIR]

A thin layer over :func:`emkit.recipes.tune_run.tune_run` and
:func:`emkit.recipes.search.search_recipe`.
"""

from __future__ import annotations

import argparse

from emkit.cli.arguments import add_command, int_at_least

WATERSHED_DESCRIPTION = """\
Search the postprocessing options of a trained run (seeded 2D watershed for boundary
recipes, watershed + agglomeration for affinity recipes) that give the best score on
the validation sections. The prediction is computed once: it is read from the run's
outputs/validation.h5 (pred), or the model predicts the validation sections once; each
trial only segments and scores.

Trial 0 is the recipe's current options, so "default -> best" is an honest before and
after. For affinities every trial scans the agglomeration thresholds (--thresholds) in
one pass and keeps the best. The study lives in an Optuna storage (default
sqlite:///mlruns/optuna.db) under --study (default watershed-<run folder>): running the
command again continues it until it has --n-trials finished trials.

Metrics (--metric; default rand_error for boundaries, adapted_rand_error for affinities):
  rand_error          Rand F-score of Table 3.1 ("Rand - Full"), maximised; the table's
                      Rand error is 1 - F
  adapted_rand_error  1 - Rand F-score (CREMI, SNEMI3D), minimised
  voi                 voi_split + voi_merge (bits), minimised
  cremi_score         sqrt(VOI x ARAND) (needs the data's voxel size), minimised

Writes into <run>/tuning/<study>/ (or --output): tuned.yaml, the resolved recipe with the
best postprocess.options; trials.csv; tuning.json; the study's plots; with --pareto,
pareto.csv. Prints the equivalent --set line. The run's MLflow run (from
checkpoints/state.json) gets metrics tune_<metric>_default, tune_<metric>_best and
tune_best_<option>, the tag emkit.tuned_postprocess and the files as artifacts under
tuning/<study>. A bare .keras model has no MLflow run: nothing is logged for it.

--pareto: a two-objective study maximising the Rand split and merge scores. pareto.csv
lists the Pareto front, one operating point per row with its --set line, so you can
trade splits for merges; tuned.yaml takes the point with the best --metric.

Exit status 0 on success, 2 on bad input.
"""

WATERSHED_EPILOG = """\
examples:
  emkit tune watershed runs/isbi_n4-20250101-120000 --n-trials 50
  emkit tune watershed runs/cremi_unet3d-20250101-120000 --metric cremi_score
  emkit tune watershed runs/isbi_n4-20250101-120000 --pareto --n-trials 80
  emkit tune watershed model.keras --recipe isbi_n4 --root ~/data --output tuned/
  emkit recipe run isbi_n4 --set 'postprocess.options={seed_threshold: 0.21, min_size: 40}'
"""

RECIPE_DESCRIPTION = """\
Search recipe keys (learning rate, widths, augmentation, ...) with Optuna. Each trial
trains the recipe with the values drawn from the space file, as a nested MLflow run
under one parent run; unpromising trials are stopped early by the pruner at their
validations. The study lives in an Optuna storage (default sqlite:///mlruns/optuna.db)
and resumes by name. Exit status 0 on success, 2 on bad input.
"""

RECIPE_EPILOG = """\
examples:
  emkit tune recipe isbi_n4 --space space.yaml --n-trials 20 --quick
  emkit tune recipe isbi_n4 --space space.yaml --n-trials 40 --set train.max_minutes=10 \\
      --pruner hyperband --study lr-search --storage postgresql://host/optuna
"""

METRICS = ("rand_error", "adapted_rand_error", "voi", "cremi_score")  # OBJECTIVES' keys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "tune",
                         help="Optuna studies: postprocessing of a run, or whole recipes",
                         description="Optuna studies, stored in a shared database and resumable: "
                                     "`tune watershed` searches the postprocessing of a trained "
                                     "run, `tune recipe` searches recipe keys by training "
                                     "trials.")
    sub = parser.add_subparsers(dest="tune_command", metavar="ACTION", required=True)

    ws = add_command(sub, "watershed",
                     help="tune the postprocessing of a trained run on its validation data",
                     description=WATERSHED_DESCRIPTION, epilog=WATERSHED_EPILOG)
    ws.add_argument("source", metavar="RUN_OR_MODEL",
                    help="a run folder (emkit recipe run) or a .keras model")
    ws.add_argument("--n-trials", type=int_at_least(1), default=50, metavar="N",
                    help="run until the study has N finished trials (default: 50)")
    ws.add_argument("--metric", choices=METRICS,
                    help="the objective (default: rand_error for boundaries, "
                         "adapted_rand_error for affinities)")
    ws.add_argument("--pareto", action="store_true",
                    help="maximise Rand split and merge; write the front to pareto.csv")
    ws.add_argument("--recipe", metavar="NAME_OR_PATH",
                    help="the recipe (required for a bare model; replaces recipe.yaml)")
    ws.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                    metavar="KEY=VALUE", help="override a recipe key, e.g. data.crop=[256,256]")
    ws.add_argument("--root", help="data root (sets data.root)")
    ws.add_argument("--study", metavar="NAME",
                    help="study name (default: watershed-<run folder or model name>)")
    ws.add_argument("--storage", metavar="URL",
                    help="Optuna storage (default: $EMKIT_OPTUNA_STORAGE or "
                         "sqlite:///mlruns/optuna.db)")
    ws.add_argument("--seed", type=int, default=0, help="TPE sampler seed (default: 0)")
    ws.add_argument("--thresholds", metavar="T,T",
                    help="affinities: agglomeration thresholds scanned per trial "
                         "(default: 0.05,0.10,...,0.95)")
    ws.add_argument("--output", metavar="DIR",
                    help="where to write (default: <run>/tuning/<study>; required for a model)")
    ws.add_argument("--overwrite", action="store_true",
                    help="replace a tuned.yaml written by another study")
    ws.add_argument("--tracking-uri", metavar="URI",
                    help="MLflow tracking URI (default: the recipe's tracking.uri)")
    ws.add_argument("--timeout", type=float, metavar="SECONDS",
                    help="start no new trial after this many seconds")
    ws.add_argument("--quiet", action="store_true", help="no progress bar")
    ws.set_defaults(func=run_watershed)

    rc = add_command(sub, "recipe",
                     help="search recipe keys by training trials (nested MLflow runs)",
                     description=RECIPE_DESCRIPTION, epilog=RECIPE_EPILOG)
    rc.add_argument("recipe", help="a shipped recipe name or a .yaml path")
    rc.add_argument("--space", required=True, metavar="SPACE.yaml",
                    help="the search space: recipe keys and their ranges or choices")
    rc.add_argument("--n-trials", type=int_at_least(1), required=True, metavar="N",
                    help="run until the study has N finished (complete or pruned) trials")
    rc.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                    metavar="KEY=VALUE", help="override a recipe key, e.g. train.max_steps=2000")
    rc.add_argument("--quick", action="store_true", help="the recipe's small --quick budget")
    rc.add_argument("--study", metavar="NAME", help="study name (default: from the recipe)")
    rc.add_argument("--storage", metavar="URL",
                    help="Optuna storage (default: $EMKIT_OPTUNA_STORAGE or "
                         "sqlite:///mlruns/optuna.db)")
    rc.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                    help="stop bad trials early at their validations (default: median)")
    rc.add_argument("--metric", metavar="KEY",
                    help="validation metric to optimise (default: train.best_metric)")
    rc.add_argument("--tracking-uri", metavar="URI",
                    help="MLflow tracking URI (default: the recipe's tracking.uri)")
    rc.add_argument("--output-root", metavar="DIR", help="where the trials' run folders go")
    rc.add_argument("--timeout", type=float, metavar="SECONDS",
                    help="start no new trial after this many seconds")
    rc.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    rc.add_argument("--root", help="data root (sets data.root)")
    rc.set_defaults(func=run_recipe)
    return parser


def run_watershed(args) -> int:
    from emkit.recipes.tune_run import tune_run
    from emkit.tune.postprocess import THRESHOLD_GRID

    thresholds = THRESHOLD_GRID
    if args.thresholds:
        from emkit.cli.segment import parse_floats

        thresholds = parse_floats(args.thresholds, "--thresholds")
    overrides = list(args.overrides) + ([f"data.root={args.root}"] if args.root else [])
    done = tune_run(
        args.source, recipe=args.recipe, overrides=overrides, n_trials=args.n_trials,
        metric=args.metric, study_name=args.study, storage=args.storage, seed=args.seed,
        pareto=args.pareto, thresholds=thresholds, output=args.output,
        overwrite=args.overwrite, tracking_uri=args.tracking_uri, timeout=args.timeout,
        progress=not args.quiet,
    )
    r = done.tune
    better = "higher" if r.direction == "maximize" else "lower"
    print(f"study       {r.study_name}  ({r.storage}), {r.n_complete} finished trials"
          + ("  [split vs merge]" if r.pareto else ""))
    default = "n/a" if r.default_value is None else f"{r.default_value:.4f}"
    print(f"{r.metric:<11} recipe's options {default} -> best {r.best_value:.4f} "
          f"(trial {r.best_trial}; {better} is better)")
    if r.metric == "rand_error" and r.default_value is not None:
        print(f"            Rand error (1 - F): {1 - r.default_value:.4f} -> {1 - r.best_value:.4f}")
    if r.pareto:
        print(f"pareto      {len(r.pareto_front)} operating points in "
              f"{done.folder / 'pareto.csv'} (split, merge, --set line)")
    print(f"use         --set '{r.override}'")
    names = ", ".join(p.name for p in done.files)
    print(f"wrote       {done.folder}/  ({names})")
    if done.predicted:
        print(f"predicted   the validation sections once (cached in {done.folder}/validation.h5)")
    if done.plots_skipped:
        print("not drawn   " + "; ".join(f"{k}: {v}" for k, v in done.plots_skipped.items()))
    if done.run_id is not None:
        print(f"mlflow run  {done.run_id}  ({done.tracking_uri}): tune_{r.metric}_default, "
              f"tune_{r.metric}_best, tune_best_*, tag emkit.tuned_postprocess")
    else:
        print("mlflow      nothing logged: no run id (a bare model, or no checkpoints/state.json)")
    return 0


def run_recipe(args) -> int:
    from emkit.recipes.search import search_recipe

    overrides = list(args.overrides) + ([f"data.root={args.root}"] if args.root else [])
    r = search_recipe(
        args.recipe, args.space, n_trials=args.n_trials, overrides=overrides, quick=args.quick,
        study_name=args.study, storage=args.storage, pruner=args.pruner, metric=args.metric,
        tracking_uri=args.tracking_uri, output_root=args.output_root, timeout=args.timeout,
        seed=args.seed,
    )
    print(f"study       {r.study_name}  ({r.storage})")
    print(f"trials      {r.n_complete} complete, {r.n_pruned} pruned")
    if r.best_value is None:
        print("best        no complete trial yet")
    else:
        print(f"best        {r.best_value:.4f}  {r.best_params}")
    if r.best_overrides:
        sets = " ".join(f"--set '{o}'" for o in r.best_overrides)
        print(f"use         emkit recipe run {args.recipe} {sets}")
    print(f"mlflow      parent run {r.parent_run_id}")
    if r.plots:
        print("plots       " + ", ".join(str(p) for p in r.plots))
    return 0
