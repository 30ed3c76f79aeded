"""``emkit ensemble``: train, make and apply ensembles of models (thesis 2.8).

    emkit ensemble train isbi_vd2d --members 5 --set train.max_minutes=9 [--output DIR]
    emkit ensemble create --models a.keras b.keras [--weights 2 1 | --fit-weights --recipe R]
                          --output ensemble.yaml
    emkit ensemble predict --models a.keras b.keras --input VOL --output OUT [--save e.yaml]
    emkit ensemble predict --ensemble e.yaml --input VOL --output OUT [--tta ...]

A thin layer over :mod:`emkit.ensemble`. An ensemble file also works wherever a
model does: ``emkit predict --model ensemble.yaml``; ``emkit segment`` and
``emkit evaluate`` take its prediction like any other.
"""

from __future__ import annotations

import argparse
import sys

from emkit.cli.arguments import add_command, int_at_least
from emkit.errors import InputError, OverwriteError

_MAIN_METRICS = ("pixel_error", "rand_error", "rand_split", "rand_merge", "v_rand", "v_info",
                 "adapted_rand_error", "cremi_score")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from emkit.cli.predict import add_volume_arguments

    parser = add_command(subparsers, "ensemble",
                         help="train, make and apply ensembles: the weighted mean of several "
                              "models",
                         description="An ensemble is a small YAML file of .keras members with "
                                     "weights (and each member's sha256, so that a changed "
                                     "member is an error). Its prediction is the weighted mean "
                                     "of the members' predictions, each member tiled with its "
                                     "own field of view; members may differ in architecture but "
                                     "must share the output channels and 2D/3D kind. `emkit "
                                     "predict --model ensemble.yaml` works too, and `emkit "
                                     "segment` / `emkit evaluate` take the prediction.")
    sub = parser.add_subparsers(dest="ensemble_command", metavar="ACTION", required=True)

    def members(p, models=None):
        """Adds the member options (``--models``, ``--weights``, ``--fit-weights``, ...).

        Args:
            p: the subcommand's parser.
            models: a group of ``p`` to hold ``--models`` (then optional there), or None
                to add a required ``--models`` to ``p`` itself.
        """
        (models or p).add_argument("--models", nargs="+", metavar="M.keras",
                                   required=models is None, help="the member models")
        p.add_argument("--weights", nargs="+", type=float, metavar="W",
                       help="one weight per member, normalized to sum 1 (default: equal, or "
                            "the ensemble file's)")
        p.add_argument("--fit-weights", action="store_true",
                       help="fit the weights on the validation sections of --recipe: each member "
                            "predicts them once, and the weights (>= 0, sum 1) minimize the "
                            "binary cross-entropy of the weighted mean on labelled voxels")
        p.add_argument("--recipe", metavar="NAME_OR_PATH",
                       help="the recipe whose data and validation sections --fit-weights uses")
        p.add_argument("--root", help="data root for --recipe (sets data.root)")
        p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                       metavar="KEY=VALUE", help="override a key of --recipe")

    predict = add_command(sub, "predict",
                          help="predict a volume with an ensemble (the weighted mean of its "
                               "members)",
                          description="Predict a volume with the weighted mean of several "
                                      "models, each tiled with its own field of view; written "
                                      "like `emkit predict`'s output, so that `emkit segment` "
                                      "and `emkit evaluate` take it.",
                          epilog="example: emkit ensemble predict --models run1/model.keras "
                                 "run2/model.keras --input emkit:isbi2012/test-volume --output "
                                 "pred.tif --save ensemble.yaml")
    group = predict.add_mutually_exclusive_group(required=True)
    group.add_argument("--ensemble", metavar="E.yaml", help="an ensemble file")
    members(predict, models=group)
    add_volume_arguments(predict, preprocess_source="the ensemble file (or its members)")
    predict.add_argument("--save", metavar="E.yaml",
                         help="also save the ensemble (fitted weights included) to this file")
    predict.set_defaults(func=run_predict)

    create = add_command(sub, "create", help="write an ensemble file from models (and weights)",
                         description="Write an ensemble file: member paths relative to it, "
                                     "weights, sha256.",
                         epilog="example: emkit ensemble create --models a/model.keras "
                                "b/model.keras --fit-weights --recipe isbi_n4 --output "
                                "ensemble.yaml")
    members(create)
    create.add_argument("--output", required=True, metavar="E.yaml", help="the file to write")
    create.add_argument("--overwrite", action="store_true", help="replace an existing file")
    create.add_argument("--quiet", action="store_true", help="no summary")
    create.set_defaults(func=run_create)

    train = add_command(sub, "train",
                        help="train K members of a recipe and score their ensemble "
                             "(EnsembleLearner)",
                        description="Train K runs of a recipe with seeds run.seed + k, as child "
                                    "runs of one MLflow parent run, write DIR/ensemble.yaml "
                                    "(equal weights), and predict, segment and evaluate the "
                                    "validation sections with the ensemble like a single run "
                                    "(val_<metric> on the parent, member<k>_<metric> beside it). "
                                    "EACH MEMBER GETS THE RECIPE'S WHOLE BUDGET "
                                    "(train.max_steps, train.max_minutes): split a total budget "
                                    "with e.g. --set train.max_minutes=9 for 5 members in 45 "
                                    "minutes. Rerunning with the same --output continues: "
                                    "finished members are skipped, an unfinished one resumes "
                                    "from its last checkpoint.",
                        epilog="example: emkit ensemble train isbi_vd2d --members 5 --set "
                               "train.max_minutes=9")
    train.add_argument("recipe", help="a shipped recipe name or a .yaml path")
    train.add_argument("--members", type=int_at_least(1), required=True, metavar="K",
                       help="the number of members")
    train.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                       metavar="KEY=VALUE", help="override a key for every member, e.g. "
                                                 "train.max_minutes=9 (the budget per member)")
    train.add_argument("--quick", action="store_true",
                       help="the recipe's small --quick budget, per member")
    train.add_argument("--root", help="data root (sets data.root)")
    train.add_argument("--output", metavar="DIR",
                       help="the ensemble folder (default runs/<recipe>-ensemble<K>-<time>); a "
                            "folder of an earlier, unfinished call is continued")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (sets tracking.uri)")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the --output folder and start again")
    train.set_defaults(func=run_train)
    return parser


# --------------------------------------------------------------------------- predict, create


def _build(args):
    """The ensemble that the arguments describe, weights fitted if asked."""
    from emkit.ensemble import load_ensemble, make_ensemble, with_weights

    if args.fit_weights and args.weights:
        raise InputError("--weights and --fit-weights: give one or the other")
    if args.fit_weights and not args.recipe:
        raise InputError("--fit-weights needs --recipe NAME_OR_PATH (its validation sections)")
    if getattr(args, "ensemble", None):
        ensemble = load_ensemble(args.ensemble)
        if args.weights:
            ensemble = with_weights(ensemble, args.weights, metadata={"weights": {"method": "given"}})
    else:
        ensemble = make_ensemble(
            args.models, weights=args.weights,
            metadata={"weights": {"method": "given" if args.weights else "uniform"}},
        )
    if args.fit_weights:
        ensemble = _fit(ensemble, args)
    return ensemble


def _fit(ensemble, args):
    from emkit.ensemble import fit_validation_weights, load_members, with_weights
    from emkit.recipes import load_recipe
    from emkit.recipes.build import prepare_data

    overrides = [*args.overrides, *([f"data.root={args.root}"] if args.root else [])]
    recipe = load_recipe(args.recipe, overrides, segmentation_only=True)
    data = prepare_data(recipe)
    names = [f"'{p}'" for p in ensemble.paths]
    fit = fit_validation_weights(load_members(ensemble), recipe, data, names=names)
    if not args.quiet:
        print(f"fitted weights on {recipe.name} sections {list(data.validation_sections)} "
              f"({fit.voxels} labelled values): cross-entropy {fit.loss:.4f} "
              f"(equal weights {fit.uniform_loss:.4f})", file=sys.stderr)
        for path, w, loss in zip(ensemble.paths, fit.weights, fit.member_losses):
            print(f"  {w:.4f}  {path}  (alone {loss:.4f})", file=sys.stderr)
    metadata = {"recipe": recipe.name, "weights": fit.metadata(
        sections=list(data.validation_sections))}
    return with_weights(ensemble, fit.weights, metadata=metadata)


def _check_save(path, overwrite: bool) -> None:
    from pathlib import Path

    from emkit.ensemble import is_ensemble_file

    if not is_ensemble_file(path):
        raise InputError(f"ensemble file: expected a .yaml file to write, got '{path}'")
    if Path(path).exists() and not overwrite:
        raise OverwriteError(f"'{path}' exists; pass --overwrite to replace it")


def run_predict(args) -> int:
    from emkit.cli.predict import check_tiling_arguments, predict_to_output
    from emkit.ensemble import save_ensemble
    from emkit.inference import check_output
    from emkit.io import open_volume

    check_tiling_arguments(args)
    check_output(args.output, overwrite=args.overwrite)  # fail before loading anything
    if args.save:
        _check_save(args.save, args.overwrite)
    raw = open_volume(args.input)
    ensemble = _build(args)
    if args.save:
        save_ensemble(ensemble, args.save, overwrite=args.overwrite)
        if not args.quiet:
            print(f"saved the ensemble to {args.save}", file=sys.stderr)
    return predict_to_output(ensemble, raw, args)


def run_create(args) -> int:
    from emkit.ensemble import check_members, load_members, save_ensemble

    _check_save(args.output, args.overwrite)
    ensemble = _build(args)
    # Load every member now, so that a file that is not a model, or members that
    # cannot be averaged, fail here and not at the first prediction (--fit-weights has
    # loaded and checked them already).
    if not args.fit_weights:
        check_members(load_members(ensemble), [f"'{p}'" for p in ensemble.paths])
    save_ensemble(ensemble, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {args.output}: {len(ensemble.members)} members, weights "
              f"{[round(float(w), 4) for w in ensemble.weights]}")
    return 0


# --------------------------------------------------------------------------- train


def run_train(args) -> int:
    from emkit.cli.recipe import recipe_overrides
    from emkit.ensemble import train_ensemble
    from emkit.recipes import load_recipe
    from emkit.tracking import tracking_uri

    overrides = recipe_overrides(args)
    result = train_ensemble(args.recipe, members=args.members, overrides=overrides,
                            quick=args.quick, output=args.output, overwrite=args.overwrite,
                            verbose=2)
    recipe = load_recipe(args.recipe, overrides, quick=args.quick, segmentation_only=True)
    skipped = [k for k, t in enumerate(result.trained) if not t]
    note = f" (already trained: {', '.join(map(str, skipped))})" if skipped else ""
    print(f"\nensemble    {recipe.name} x {args.members} members{note}")
    print(f"mlflow run  {result.parent_run_id}  ({tracking_uri(recipe.tracking.uri)}, "
          f"experiment {recipe.tracking.experiment}; `emkit ui` to browse)")
    for k, metrics in enumerate(result.member_metrics):
        print(f"member {k:<4} {_shown(metrics)}")
    print(f"ensemble    {_shown(result.metrics)}")
    print(f"outputs     {result.output_dir}/  (ensemble.yaml, member-*/, outputs/); "
          f"`emkit predict --model {result.ensemble_path}`")
    return 0


def _shown(metrics: dict) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in _MAIN_METRICS
                     if metrics.get(k) is not None) or "(no metrics)"
