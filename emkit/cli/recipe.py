"""``emkit recipe``: list, show and run recipes.

    emkit recipe list
    emkit recipe show isbi_n4 [--set key=value ...] [--quick]
    emkit recipe run isbi_n4 [--quick] [--set train.max_steps=100 ...] [--output DIR]
                             [--resume] [--overwrite] [--tracking-uri URI] [--root DIR]

A thin layer over :mod:`emkit.recipes` and :func:`emkit.recipes.run.run_recipe`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from emkit.cli.arguments import add_command


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "recipe",
                         help="list, show and run recipes (whole pipelines in one YAML file)",
                         description="A recipe is one YAML file that specifies a whole pipeline: "
                                     "data, preprocessing, model, sampling, training, inference, "
                                     "postprocessing, evaluation, export and tracking.")
    sub = parser.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="the shipped recipes").set_defaults(func=run_list)

    def common(p):
        p.add_argument("recipe", help="a shipped recipe name or a .yaml path")
        p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                       metavar="KEY=VALUE", help="override keys: --set train.max_steps=100 sampler.batch_size=8 (several pairs, or --set again)")
        p.add_argument("--quick", action="store_true",
                       help="the documented small budget (a few minutes; see QUICK_OVERRIDES)")
        p.add_argument("--root", help="data root (sets data.root)")

    show = sub.add_parser("show", help="print the fully resolved recipe")
    common(show)
    show.set_defaults(func=run_show)
    run = sub.add_parser("run", help="train, validate, evaluate and export; tracked in MLflow")
    common(run)
    run.add_argument("--output", help="the run folder (default runs/<recipe>-<time>); "
                                      "a folder with an unfinished run is resumed exactly where "
                                      "its "
                                      "last checkpoint left it")
    run.add_argument("--resume", action="store_true",
                     help="resume the latest unfinished run of this recipe (or train a "
                          "finished --output run further)")
    run.add_argument("--overwrite", action="store_true", help="start the --output folder afresh, deleting the run in it "
                          "(an unfinished run's MLflow run is ended as KILLED)")
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
    """The newest ``<output_root>/<name>-*`` folder whose run is not finished.

    Args:
        output_root: the recipe's ``run.output_root``.
        name: the recipe's name.
    """
    from emkit.training import read_state

    for folder in sorted(Path(output_root).glob(f"{name}-*"), reverse=True):
        state = read_state(folder / "checkpoints")
        if state is not None and not state.finished:
            return folder
    return None


def run_output(args, recipe):
    """``--output``; with ``--resume`` and no ``--output``, the latest unfinished run's folder.

    Args:
        args: the parsed arguments (``--output``, ``--resume``).
        recipe: the loaded recipe.
    """
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
    from emkit.recipes.run import run_recipe
    from emkit.tracking import tracking_uri

    recipe = _load(args)
    output = run_output(args, recipe)
    start = time.monotonic()
    result = run_recipe(recipe, output=output, resume=args.resume, overwrite=args.overwrite,
                        verbose=2)
    print(summary(recipe, result, tracking_uri(recipe.tracking.uri),
                  (time.monotonic() - start) / 60))
    return 0


#: Metric key -> how the summary names it (thesis Table 3.1 and the challenges' words).
NAMES = {"pixel_error": "pixel error", "v_rand": "ISBI V_rand", "v_info": "ISBI V_info",
         "rand_error": "Rand full", "rand_split": "Rand split", "rand_merge": "Rand merge",
         "adapted_rand_error": "adapted Rand error", "cremi_score": "CREMI score",
         "voi": "VOI"}


def aligner_summary(recipe, result, uri: str) -> str:
    """What an align recipe's run produced (``emkit recipe run``, ``emkit align train``).

    Args:
        recipe: the align recipe as run.
        result: the run's :class:`~emkit.recipes.run.RunResult` (from
            :func:`~emkit.recipes.align_run.train_aligner`).
        uri: the tracking store.

    Returns:
        The lines to print, joined by newlines.
    """
    return "\n".join([
        "",
        f"recipe      {recipe.name}{' (resumed)' if result.resumed else ''}",
        (f"mlflow run  {result.run_id}  ({uri}, experiment {recipe.tracking.experiment}; "
        "`emkit ui` to browse)"),
        f"steps       {result.steps}  ({result.stopped})",
        (f"outputs     {result.output_dir}/  (model.keras for `emkit align run --method learned "
        "--model`, overlay.png, checkpoints/)"),
        "validation  " + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()),
    ])


def summary(recipe, result, uri: str, minutes: float) -> str:
    """The lines printed at the end of ``emkit recipe run``: what the run got and where.

    The last line is the headline: the tuned, held-out score when the run tuned its
    postprocessing, else the validation score with the recipe's options.

    Args:
        recipe: the recipe as run.
        result: the run's :class:`~emkit.recipes.run.RunResult`.
        uri: the tracking store.
        minutes: this call's wall time.
    """
    if getattr(recipe, "task", None) == "align":
        return aligner_summary(recipe, result, uri)
    m, tuning = result.metrics, result.tuning
    folder = result.output_dir
    lines = ["", (f"== {recipe.name}{' (resumed)' if result.resumed else ''}: "
                 f"{result.steps} steps ({result.stopped or 'done'}), {minutes:.1f} min in "
                 "this call ==")]
    sections = recipe.data.validation_sections
    lines.append(f"validation   sections {_sections(sections)} of {recipe.data.name}")
    if m.get("pixel_error") is not None:
        lines.append("boundary map " + "   ".join(
            f"{NAMES[k]} {m[k]:.4f}" for k in ("pixel_error", "v_rand", "v_info")
            if m.get(k) is not None))
    if tuning is None:
        keys = ("rand_error", "rand_split", "rand_merge", "adapted_rand_error", "cremi_score")
        shown = "   ".join(f"{NAMES[k]} {m[k]:.4f}" for k in keys if m.get(k) is not None)
        lines.append(f"segmentation {shown}  (recipe options; postprocess.tune is off)")
        headline = f"{NAMES.get(recipe.train.best_metric, recipe.train.best_metric)} " \
                   f"{m.get(recipe.train.best_metric, float('nan')):.4f}"
    else:
        k = tuning.metric
        before, after = tuning.before, tuning.after
        lines.append(
            f"segmentation {NAMES.get(k, k)} {before[k]:.4f} with the recipe's options -> "
            f"{after[k]:.4f} tuned (split {before['rand_split']:.3f} -> "
            f"{after['rand_split']:.3f}, merge {before['rand_merge']:.3f} -> "
            f"{after['rand_merge']:.3f})")
        lines.append("             held out: each section scored with options tuned on the "
                     f"other sections ({len(tuning.folds)} folds, in-sample best "
                     f"{tuning.in_sample:.4f})")
        from emkit.tune.postprocess import options_override

        if tuning.kept_recipe_options:
            lines.append("kept         the recipe's options: tuning did not beat them on "
                         "held-out sections (tuned on all: "
                         f"{options_override(tuning.tuned_options)})")
            headline = f"{NAMES.get(k, k)} {before[k]:.4f} with the recipe's options " \
                       f"(held out; tuning gave {after[k]:.4f}, not kept)"
        else:
            lines.append(f"tuned        {options_override(tuning.options)}  (in recipe.yaml)")
            headline = f"{NAMES.get(k, k)} {after[k]:.4f} after tuning (held out; " \
                       f"{before[k]:.4f} before)"
    lines.append(f"model        {result.model_path}  (emkit predict --model ...)")
    exports = [str(p) for p in result.outputs]
    if exports:
        lines.append(f"outputs      {', '.join(exports)}")
    curves = folder / "learning_curves.png"
    if curves.exists():
        lines.append(f"curves       {curves}")
    lines.append(f"mlflow       run {result.run_id}, experiment {recipe.tracking.experiment!r} "
                 f"in {uri}")
    lines.append(f"browse       emkit ui{'' if uri.startswith('sqlite:///mlruns') else ' --tracking-uri ' + uri}")
    volumes = folder / "outputs" / "validation.h5"
    if volumes in [Path(p) for p in result.outputs]:
        from emkit.view import view_command

        lines.append("view         " + view_command(*(f"{volumes}:{key}"
                                                      for key in ("raw", "pred", "seg"))))
    lines.append(f"result       {recipe.name}: {headline}, on validation sections "
                 f"{_sections(sections)}; model in {folder}/")
    return "\n".join(lines)


def _sections(sections) -> str:
    sections = list(sections or [])
    if not sections:
        return "(all)"
    if sections == list(range(sections[0], sections[-1] + 1)) and len(sections) > 2:
        return f"{sections[0]}-{sections[-1]}"
    return ",".join(str(z) for z in sections)
