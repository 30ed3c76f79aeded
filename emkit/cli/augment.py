"""``emkit augment``: see what the network will see.

``emkit augment preview RECIPE --out grid.png`` draws a few training samples with and
without augmentation, and their targets and weights, into one PNG. ``emkit augment
list`` prints every augmentation with its recipe keys and defaults.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from emkit.cli.arguments import add_command, int_at_least
from emkit.errors import InputError, OverwriteError

DESCRIPTION = """\
Write a grid of training samples as the sampler makes them: one row per sample, columns
raw (the same window, not augmented), augmented input, target and weight. 3D samples show
the section with the most weight (a labelled one for sparse labels); a target smaller than the input (valid convolutions) is drawn in
the middle of a grey input-sized tile, where it lies; affinities show channels 1-3 as RGB.

RECIPE is a shipped recipe's name or a recipe file, with the same meaning as in `emkit
recipe run` (--set KEY=VALUE and --root apply too): the grid then shows what that
recipe's training sampler produces, its data, model windows, targets and augmentations.

RECIPE may also be a short preview file with these keys (all optional but dataset and a
model or shapes):

  dataset: isbi2012            # a name from `emkit data list`
  sections: train              # train | validation | all (split: the data set's default)
  model: n4                    # a registered architecture, or a mapping such as
                               #   {arch: unet2d, input_shape: [572, 572]}
  input_shape: [95, 95]        # instead of model: the windows, (y, x) or (z, y, x)
  output_shape: [1, 1]
  target: boundaries           # boundaries | affinities
  offsets: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]   # affinities; default nearest neighbours
  thickness: 1                 # boundary half-width for segmentation labels
  balance: false               # class-balanced weights
  augment:                     # in order; `emkit augment list` shows every key
    - {name: flip}
    - {name: elastic, p: 0.5, sigma: [2, 6]}
  max_defects: 1               # at most one EM defect per sample
  seed: 0

A file with a `dataset` key is read as a preview file; its unknown keys are errors.
Without RECIPE, give --dataset and --augment (and --model or --input-shape/--output-shape).
"""

EPILOG = """\
examples:
  emkit augment preview isbi_n4 --out grid.png
  emkit augment preview medulla_unet3d_cpu --root ../shared/data --set run.seed=3 --out grid3d.png
  emkit augment preview preview.yaml --out grid.png
  emkit augment preview --dataset isbi2012 --model n4 --augment flip,rot90,elastic,blur \\
      --out grid.png
  emkit augment preview --dataset isbi2012 --input-shape 16,128,128 --output-shape 16,128,128 \\
      --target affinities --augment flip,elastic,misalign,missing_section --out grid3d.png
  emkit augment list
"""

# Recipe key -> what it is, for the error message. A plain, static dict.
RECIPE_KEYS = {
    "dataset": "data set name",
    "sections": "train | validation | all",
    "model": "architecture name or spec mapping",
    "input_shape": "input window",
    "output_shape": "output window",
    "target": "boundaries | affinities",
    "offsets": "affinity offsets",
    "thickness": "boundary half-width",
    "balance": "class-balanced weights",
    "augment": "augmentation list",
    "max_defects": "EM defects per sample",
    "seed": "sample seed",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "augment",
                         help="preview training samples and list augmentations",
                         description="Preview training samples (augment preview) or list "
                                     "augmentations.")
    commands = parser.add_subparsers(dest="augment_command", metavar="{preview,list}")
    preview = add_command(commands, "preview",
                          help="write a PNG grid of raw, augmented input, target and weight",
                          description=DESCRIPTION, epilog=EPILOG)
    preview.add_argument("recipe", metavar="RECIPE", nargs="?",
                         help="a shipped recipe's name, a recipe file or a preview file")
    preview.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                         metavar="KEY=VALUE", help="override recipe keys (a recipe RECIPE)")
    preview.add_argument("--out", required=True, metavar="PNG", help="the PNG to write")
    preview.add_argument("--samples", type=int, default=4, help="rows (default 4)")
    preview.add_argument("--seed", type=int, help="sample seed (default: recipe's, else 0)")
    preview.add_argument("--dataset", help="data set name (without RECIPE)")
    preview.add_argument("--root", help="data root for the data set (default: $EMKIT_DATA)")
    preview.add_argument("--model", help="registered architecture (without RECIPE)")
    preview.add_argument("--input-shape", metavar="Y,X|Z,Y,X", help="input window")
    preview.add_argument("--output-shape", metavar="Y,X|Z,Y,X", help="output window")
    preview.add_argument("--target", choices=("boundaries", "affinities"), help="target kind")
    preview.add_argument(
        "--augment", metavar="A,B", help="comma-separated augmentation names, default keys"
    )
    preview.add_argument("--max-defects", type=int_at_least(0), help="EM defects per sample at most")
    preview.add_argument("--force", action="store_true", help="overwrite --out")
    listing = commands.add_parser("list", help="list augmentations and their recipe keys")
    listing.set_defaults(func=run)
    preview.set_defaults(func=run)
    parser.set_defaults(func=run, _parser=parser)
    return parser


def run(args) -> int:
    command = getattr(args, "augment_command", None)
    if command == "list":
        return list_augmentations()
    if command != "preview":
        args._parser.print_help()
        return 2
    if args.samples < 1:
        raise InputError(f"--samples: expected an int >= 1, got {args.samples}")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise OverwriteError(f"'{out}' exists; pass --force to overwrite it")
    if args.recipe and is_full_recipe(args.recipe):
        rows = preview_rows(recipe_sampler(args), args.samples)
    else:
        if args.overrides:
            raise InputError("--set applies to a recipe (a shipped name or a recipe file), "
                             "not to a preview file or --dataset")
        rows = preview_samples(args_to_recipe(args), samples=args.samples, root=args.root)
    write_grid(rows, out)
    print(f"wrote {out} ({len(rows)} samples)")
    return 0


def list_augmentations() -> int:
    from emkit.augment import AUGMENTATIONS

    for name, cls in AUGMENTATIONS.items():
        params = inspect.signature(cls.__init__).parameters
        keys = ", ".join(
            f"{k}={v.default!r}" for k, v in params.items() if k != "self"
        )
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}\n    {keys}")
    return 0


# ---------------------------------------------------------------------------- recipe


def is_full_recipe(name_or_path) -> bool:
    """True for a shipped recipe's name or a recipe file (one without a ``dataset`` key)."""
    import yaml

    from emkit.recipes import RECIPES

    if name_or_path in RECIPES:
        return True
    path = Path(name_or_path)
    if not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False  # read_recipe names the problem
    return isinstance(data, dict) and "dataset" not in data


def recipe_sampler(args):
    """The training sampler of a recipe, built as ``emkit recipe run`` builds it."""
    from emkit.recipes import build, load_recipe

    overrides = [*args.overrides, *([f"data.root={args.root}"] if args.root else []),
                 *([f"run.seed={args.seed}"] if args.seed is not None else [])]
    for option in ("dataset", "model", "input_shape", "output_shape", "target", "augment",
                   "max_defects"):
        if getattr(args, option) is not None:
            raise InputError(f"--{option.replace('_', '-')} applies to a preview file or to "
                             f"no RECIPE; for the recipe {args.recipe!r} use --set instead")
    recipe = load_recipe(args.recipe, overrides, segmentation_only=True)
    data = build.prepare_data(recipe)
    plan = build.device_plan(recipe)
    net = build.build_network(recipe, plan)
    export = build.exporter(recipe, net)
    model = build.build_trainer(recipe, net, plan) if export.net is not None else net
    return build.make_sampler(recipe, data, model)


def read_recipe(path) -> dict:
    """A preview recipe from YAML, with unknown keys reported."""
    from emkit.io import read_yaml_mapping

    path = Path(path)
    recipe = read_yaml_mapping(path, what="recipe", expected="a mapping of keys")
    unknown = [k for k in recipe if k not in RECIPE_KEYS]
    if unknown:
        raise InputError(
            f"recipe '{path}': unknown key {unknown[0]!r}; allowed: {', '.join(RECIPE_KEYS)}"
        )
    return recipe


def _shape(text, option):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {text!r}") from None


def args_to_recipe(args) -> dict:
    """The recipe: the YAML file's keys, overridden by command-line options."""
    recipe = read_recipe(args.recipe) if args.recipe else {}
    if args.dataset:
        recipe["dataset"] = args.dataset
    if args.model:
        recipe["model"] = args.model
    if args.input_shape:
        recipe["input_shape"] = _shape(args.input_shape, "--input-shape")
    if args.output_shape:
        recipe["output_shape"] = _shape(args.output_shape, "--output-shape")
    if args.target:
        recipe["target"] = args.target
    if args.augment:
        recipe["augment"] = [name.strip() for name in args.augment.split(",") if name.strip()]
    if args.max_defects is not None:
        recipe["max_defects"] = args.max_defects
    if args.seed is not None:
        recipe["seed"] = args.seed
    if "dataset" not in recipe:
        raise InputError("give a RECIPE with a 'dataset' key, or --dataset")
    return recipe


def recipe_model(recipe):
    """The Keras model a recipe names: a registered architecture, or a shape stand-in."""
    from emkit.sampling import shape_model

    model = recipe.get("model")
    shapes = [recipe.get("input_shape"), recipe.get("output_shape")]
    if model is not None and any(s is not None for s in shapes):
        raise InputError("give either model or input_shape/output_shape, not both")
    if model is None:
        if shapes[0] is None:
            raise InputError("give a model (e.g. model: n4) or input_shape (and output_shape)")
        target = recipe.get("target", "boundaries")
        channels = 1
        if target == "affinities":
            channels = len(recipe.get("offsets") or ([0] * len(shapes[0])))
        return shape_model(shapes[0], shapes[1] or shapes[0], out_channels=channels)
    from emkit.models import build_model
    from emkit.models.architectures import dict_to_spec

    if isinstance(model, str):
        return build_model(model)
    if isinstance(model, dict):
        return build_model(dict_to_spec(model))
    raise InputError(f"model must be an architecture name or a spec mapping, got {model!r}")


def preview_samples(recipe: dict, *, samples: int = 4, root=None):
    """Draws ``samples`` samples as a recipe's sampler makes them.

    Args:
        recipe: a preview recipe dict (the keys of ``DESCRIPTION``: ``dataset``,
            ``model`` or ``input_shape``/``output_shape``, ``augment``, ...).
        samples: the number of samples.
        root: the data root for ``load_dataset`` (None: the default).

    Returns:
        A list of dicts with ``raw``, ``augmented`` (ndarrays (Y, X)), ``target`` (Y', X',
        C) and ``weight`` (Y', X', C); for 3D samples, the output section with the most
        weight and the input section at its depth.
    """

    from emkit.datasets import load_dataset, split_sections
    from emkit.sampling import PatchSampler

    dataset = load_dataset(recipe["dataset"], root=root)
    which = recipe.get("sections", "train")
    if which not in ("train", "validation", "all"):
        raise InputError(f"sections must be train, validation or all; got {which!r}")
    sections = None
    if which != "all" and dataset.validation_sections:
        split = split_sections(dataset)
        sections = split.train if which == "train" else split.validation
    model = recipe_model(recipe)
    return preview_rows(PatchSampler.from_dataset(
        dataset, model, sections=sections,
        target=recipe.get("target", "boundaries"),
        offsets=recipe.get("offsets"),
        thickness=recipe.get("thickness", 1),
        balance=recipe.get("balance", False),
        augment=recipe.get("augment", ()),
        max_defects=recipe.get("max_defects"),
        seed=recipe.get("seed", 0),
        batch_size=1,
        batches_per_epoch=max(samples, 1),
    ), samples)


def preview_rows(sampler, samples: int):
    """Samples ``0 .. samples - 1`` of a sampler, without and with augmentation (see
    :func:`preview_samples`).

    Args:
        sampler: a :class:`~emkit.sampling.PatchSampler`.
        samples: the number of samples.

    Returns:
        The rows, as :func:`preview_samples` returns them.
    """
    import numpy as np

    rows = []
    for i in range(samples):
        bare = sampler.sample(i, augment=False)
        augmented = sampler.sample(i)
        target, weight = augmented.target, augmented.weight
        z_raw = 0
        if sampler.shapes.ndim == 3:
            # The output section with the most weight (sparse labels: a labelled one), and
            # the input section at the same depth.
            z_out = int(np.argmax(weight.sum(axis=(1, 2, 3))))
            z_raw = z_out + sampler.shapes.margin_zyx[0]
            target, weight = target[z_out], weight[z_out]
        rows.append({
            "raw": bare.raw[z_raw],
            "augmented": augmented.raw[z_raw],
            "target": target,
            "weight": weight,
        })
    return rows


# ---------------------------------------------------------------------------- picture


def write_grid(rows, path, *, min_tile: int = 128):
    """Writes preview rows as a PNG grid with column titles (Pillow).

    Args:
        rows: from :func:`preview_samples`.
        path: the PNG to write.
        min_tile: small windows are enlarged (nearest neighbour) to at least this size.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    titles = ["raw", "augmented", "target", "weight"]
    height, width = rows[0]["raw"].shape
    scale = max(1, -(-min_tile // max(height, width)))
    tile_h, tile_w = height * scale, width * scale
    header, gap = 16, 4
    grid = Image.new(
        "RGB",
        (len(titles) * (tile_w + gap) + gap, header + len(rows) * (tile_h + gap) + gap),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(titles):
        draw.text((gap + c * (tile_w + gap), 2), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        weight = row["weight"]
        peak = float(weight.max()) or 1.0
        tiles = [
            _grey(row["raw"]),
            _grey(row["augmented"]),
            _centred(_colour(row["target"]), (height, width)),
            _centred(_colour(weight / peak), (height, width)),
        ]
        for c, tile in enumerate(tiles):
            image = Image.fromarray(np.ascontiguousarray(tile))
            image = image.resize((tile_w, tile_h), Image.NEAREST)
            grid.paste(image, (gap + c * (tile_w + gap), header + gap + r * (tile_h + gap)))
    grid.save(path)


def _grey(section):
    import numpy as np

    value = (np.clip(section, 0, 1) * 255).astype(np.uint8)
    return np.repeat(value[..., None], 3, axis=-1)


def _colour(target):
    """(Y, X, C) in [0, 1] as RGB uint8: grey for one channel, channels 1-3 otherwise."""
    import numpy as np

    value = (np.clip(target, 0, 1) * 255).astype(np.uint8)
    if value.shape[-1] == 1:
        return np.repeat(value, 3, axis=-1)
    rgb = np.zeros(value.shape[:-1] + (3,), np.uint8)
    rgb[..., : min(3, value.shape[-1])] = value[..., :3]
    return rgb


def _centred(tile, shape):
    """``tile`` in the middle of a grey canvas of ``shape`` (the input window)."""
    import numpy as np

    canvas = np.full((*shape, 3), 128, np.uint8)
    oy, ox = (shape[0] - tile.shape[0]) // 2, (shape[1] - tile.shape[1]) // 2
    canvas[oy:oy + tile.shape[0], ox:ox + tile.shape[1]] = tile
    return canvas


if __name__ == "__main__":  # pragma: no cover
    from emkit.cli.main import main

    sys.exit(main(["augment", *sys.argv[1:]]))
