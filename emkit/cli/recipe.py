"""``emkit recipe``: list, show and run recipes.

    emkit recipe list
    emkit recipe show isbi_n4 [--set key=value ...] [--quick]
    emkit recipe run isbi_n4 [--quick] [--set train.max_steps=100 ...] [--output DIR]
                             [--resume] [--overwrite] [--tracking-uri URI] [--root DIR]

A thin layer over :mod:`emkit.recipes` and :func:`emkit.pipeline.run_recipe`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "recipe", help="list, show and run recipes (whole pipelines in one YAML file)",
        description="A recipe is one YAML file that specifies a whole pipeline: data, "
                    "preprocessing, model, sampling, training, inference, postprocessing, "
                    "evaluation, export and tracking.",
    )
    sub = parser.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="the shipped recipes").set_defaults(func=run_list)

    def common(p):
        p.add_argument("recipe", help="a shipped recipe name or a .yaml path")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a key, e.g. train.max_steps=100")
        p.add_argument("--quick", action="store_true",
                       help="the documented small budget (a few minutes; see QUICK_OVERRIDES)")
        p.add_argument("--root", help="data root (sets data.root)")

    show = sub.add_parser("show", help="print the fully resolved recipe")
    common(show)
    show.set_defaults(func=run_show)
    run = sub.add_parser("run", help="train, validate, evaluate and export; tracked in MLflow")
    common(run)
    run.add_argument("--output", help="the run folder (default runs/<recipe>-<time>); "
                                      "a folder with an unfinished run is resumed")
    run.add_argument("--resume", action="store_true",
                     help="resume the latest unfinished run of this recipe (or train a "
                          "finished --output run further)")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run's folder")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (sets tracking.uri)")
    run.set_defaults(func=run_run)
    return parser


def recipe_overrides(args) -> list[str]:
    """``--set`` overrides plus ``data.root`` from ``--root`` and ``tracking.uri`` from
    ``--tracking-uri`` (where the command has it); shared by the commands that train."""
    overrides = list(args.overrides)
    if args.root:
        overrides.append(f"data.root={args.root}")
    if getattr(args, "tracking_uri", None):
        overrides.append(f"tracking.uri={args.tracking_uri}")
    return overrides


def _load(args):
    from emkit.recipes import load_recipe

    return load_recipe(args.recipe, recipe_overrides(args), quick=args.quick)


def run_list(args) -> int:
    from emkit.recipes import RECIPES

    width = max(len(name) for name in RECIPES)
    for name, (_, description) in RECIPES.items():
        print(f"{name:<{width}}  {description}")
    return 0


def run_show(args) -> int:
    from emkit.recipes import dump_recipe

    print(dump_recipe(_load(args)), end="")
    return 0


def latest_unfinished(output_root, name: str) -> Path | None:
    """The newest ``<output_root>/<name>-*`` folder whose run is not finished."""
    from emkit.training import read_state

    for folder in sorted(Path(output_root).glob(f"{name}-*"), reverse=True):
        state = read_state(folder / "checkpoints")
        if state is not None and not state.finished:
            return folder
    return None


def run_output(args, recipe):
    """``--output``; with ``--resume`` and no ``--output``, the latest unfinished run's folder."""
    from emkit.errors import MissingDataError

    output = args.output
    if args.resume and output is None:
        output = latest_unfinished(recipe.run.output_root, recipe.name)
        if output is None:
            raise MissingDataError(
                f"--resume: no unfinished run of {recipe.name} under {recipe.run.output_root}/"
            )
    return output


def run_run(args) -> int:
    from emkit.pipeline import run_recipe
    from emkit.tracking import tracking_uri

    recipe = _load(args)
    output = run_output(args, recipe)
    if getattr(recipe, "task", None) == "align":  # emkit.align.recipe
        from emkit.align.learned import train_aligner
        from emkit.cli.align import report_training

        return report_training(recipe, train_aligner(recipe, output=output, resume=args.resume,
                                                     overwrite=args.overwrite, verbose=2))
    result = run_recipe(recipe, output=output, resume=args.resume, overwrite=args.overwrite,
                        verbose=2)
    m = result.metrics
    print(f"\nrecipe      {recipe.name}{' (resumed)' if result.resumed else ''}")
    print(f"mlflow run  {result.run_id}  ({tracking_uri(recipe.tracking.uri)}, "
          f"experiment {recipe.tracking.experiment}; `emkit ui` to browse)")
    print(f"steps       {result.steps}  ({result.stopped})")
    print(f"outputs     {result.output_dir}/  (model.keras, checkpoints/, outputs/)")
    keys = ("pixel_error", "rand_error", "rand_split", "rand_merge", "v_rand", "v_info",
            "adapted_rand_error", "cremi_score")
    shown = "  ".join(f"{k} {m[k]:.4f}" for k in keys if m.get(k) is not None)
    print(f"validation  {shown}")
    return 0
