"""``emkit predict``: apply a trained model (or an ensemble) to a whole volume, tile by tile.

    emkit predict --model run/model.keras --input sample_A.hdf:volumes/raw --output pred.zarr:affs
    emkit predict --model n4.keras --input emkit:isbi2012/test-volume --output pred.tif --tta
    emkit predict --model runs/isbi_vd2d-ensemble5/ensemble.yaml --input VOL --output pred.h5:pred
    emkit predict --model model.keras --input raw.zarr:raw --output pred.zarr:affs --blockwise \
        --block-size 64,256,256 --workers 2

A thin layer over :func:`emkit.inference.predict_volume` (an ensemble file:
:func:`emkit.ensemble.predict_ensemble`). HDF5, Zarr and ``.npy``
outputs are written tile block by tile block (memory bounded by the tile batch);
TIFF and PNG are written once from memory. Affinities are stored channels first
``(C, Z, Y, X)``, a one-channel map as ``(Z, Y, X)``, with the input's voxel size.
"""

from __future__ import annotations

import argparse
import sys
import time

from emkit.cli.arguments import add_command, int_at_least
from emkit.errors import InputError, yaml_problem

_BLENDS = ("bump", "gaussian", "valid")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "predict",
                         help="apply a trained model (or an ensemble) to a volume, tile by tile, "
                              "and write the float map",
                         description="Apply a trained Keras model to a whole volume, tile by "
                                     "tile. Tile sizes come from the model; tiles overlap and "
                                     "are blended (or cut, with --blend valid), and the volume "
                                     "is mirrored at its edges. A 2D model predicts each section "
                                     "of a stack. An ensemble file (ensemble.yaml, from `emkit "
                                     "ensemble`) predicts the weighted mean of its members, each "
                                     "with its own tiles. HDF5, Zarr and .npy outputs are "
                                     "written block by block, so the volume may be larger than "
                                     "memory. Input intensities are scaled as in training: "
                                     "unsigned integers divided by their maximum (uint8 by 255), "
                                     "floats as they are.",
                         epilog="example: emkit predict --model run/model.keras --input "
                                "sample_A.hdf:volumes/raw --output pred.zarr:affs --tta")
    parser.add_argument(
        "--model", required=True, metavar="M.keras",
        help="a saved .keras model, or an ensemble .yaml file (emkit ensemble)",
    )
    add_volume_arguments(parser)
    add_blockwise_arguments(parser, default_block="64,256,256")
    parser.set_defaults(func=run)
    return parser


def add_blockwise_arguments(parser, *, default_block: str) -> None:
    """``--blockwise`` and its options, shared by ``emkit predict`` and ``emkit segment``.

    Args:
        parser: the command's parser.
        default_block: the default ``--block-size``, as the help shows it.
    """
    group = parser.add_argument_group(
        "blockwise (Dask)",
        "process a chunked Zarr or HDF5 volume block by block on Dask workers, for volumes "
        "larger than memory: a local cluster by default, or a running one with --scheduler. "
        "Blocks write their own output chunks (chunks = blocks) and an atomic completion "
        "marker; a killed job, rerun with the same arguments, skips the finished blocks.",
    )
    group.add_argument("--blockwise", action="store_true",
                       help="process block by block on Dask (input and output: .zarr or .h5)")
    group.add_argument("--block-size", default=default_block, metavar="Z,Y,X",
                       help=f"write region of a block, N or Z,Y,X (default: {default_block})")
    group.add_argument("--workers", type=int_at_least(1), default=1, metavar="N",
                       help="local Dask worker processes (default: 1)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                            "(default: start a local cluster)")
    group.add_argument("--memory-limit", default="auto", metavar="BYTES",
                       help="memory limit per local worker, e.g. 2GiB (default: auto, the "
                            "machine's memory split between the workers)")


def add_volume_arguments(parser, *, preprocess_source: str = "the model") -> None:
    """The arguments shared by ``emkit predict`` and ``emkit ensemble predict``.

    Args:
        parser: the command's parser.
        preprocess_source: what ``--preprocess auto`` reads, for the help.
    """
    parser.add_argument(
        "--input", required=True, metavar="VOL",
        help="the raw volume: stack.tif, file.h5:KEY, store.zarr[:KEY], array.npy, folder/ or "
             "emkit:NAME",
    )
    parser.add_argument(
        "--output", required=True, metavar="OUT",
        help="where to write: out.h5:KEY, out.zarr[:KEY], out.npy, out.tif or folder/",
    )
    parser.add_argument(
        "--tile", metavar="Z,Y,X",
        help="output tile size, (y, x) for a 2D model or (z, y, x) for a 3D one, e.g. 16,128,128 "
             "(default: the model's own output window; rounded up to a size the model takes)",
    )
    parser.add_argument(
        "--overlap", metavar="N",
        help="output voxels shared by neighbouring tiles, N or Z,Y,X (default: a quarter of the "
             "tile for bump and gaussian, 0 for valid)",
    )
    parser.add_argument("--batch-size", type=int, default=4, metavar="N",
                        help="tiles per forward pass (default: 4)")
    parser.add_argument("--blend", choices=_BLENDS, default="bump",
                        help="how overlapping tiles are combined (default: bump)")
    parser.add_argument(
        "--tta", action="store_true",
        help="average the 8 (2D) or 16 (3D) flips and y/x transposes (8-16x slower)",
    )
    parser.add_argument(
        "--offsets", nargs="+", metavar="Z,Y,X",
        help="affinity offset of each output channel, for --tta (default: boundaries for one "
             "channel, 1,0,0 0,1,0 0,0,1 for three)",
    )
    parser.add_argument(
        "--preprocess", choices=("auto", "none", "standardize", "whiten"), default="auto",
        help="intensity preprocessing before inference; auto (default) uses the method of the "
             f"recipe.yaml beside {preprocess_source} (an emkit run folder), else none. Methods "
             "other than none read the whole input into memory",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args) -> int:
    from emkit.ensemble import is_ensemble_file, load_ensemble
    from emkit.inference import check_output
    from emkit.io import open_volume

    check_tiling_arguments(args)
    if getattr(args, "blockwise", False):
        return run_blockwise(args)
    check_output(args.output, overwrite=args.overwrite)  # fail before loading anything
    raw = open_volume(args.input)
    if is_ensemble_file(args.model):
        return predict_to_output(load_ensemble(args.model), raw, args)
    return predict_to_output(_load(args.model), raw, args, model_path=args.model)


def run_blockwise(args) -> int:
    """``emkit predict --blockwise``: :func:`emkit.blockwise.predict_blockwise`."""
    from emkit.blockwise import predict_blockwise
    from emkit.ensemble import is_ensemble_file

    if is_ensemble_file(args.model):
        raise InputError("--blockwise takes one .keras model, not an ensemble file")
    method, _, source = _preprocessing(args.preprocess, args.model)
    if method != "none":
        raise InputError(
            f"--blockwise: preprocessing '{method}' (from {source}) uses statistics of the "
            "whole volume; preprocess the volume first, or pass --preprocess none"
        )
    summary = predict_blockwise(
        args.model, args.input, args.output, block_shape=block_size(args.block_size),
        workers=args.workers, scheduler=args.scheduler, memory_limit=args.memory_limit,
        overwrite=args.overwrite, progress=not args.quiet, tile_shape=args.tile,
        overlap=args.overlap, blend=args.blend, batch_size=args.batch_size, tta=args.tta,
        offsets=args.offsets,
    )
    if not args.quiet:
        print(
            f"wrote {args.output}: {summary['channels']} channel(s), {summary['blocks']} blocks "
            f"of {summary['block_shape']} (context {summary['context']}), {summary['run']} "
            f"computed, {summary['skipped']} found done, in {summary['seconds']:.1f} s"
        )
    return 0


def block_size(text, option: str = "--block-size", minimum: int = 1) -> tuple[int, int, int]:
    """``--block-size`` (or ``option``, e.g. ``--halo`` with ``minimum=0``): ``N`` or ``Z,Y,X``.

    Args:
        text: ``N`` or ``Z,Y,X`` (or a sequence already parsed).
        option: the option's name, for messages.
        minimum: the smallest value allowed.
    """
    values = _ints(text, option) if isinstance(text, str) else tuple(text)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < minimum:
        what = "positive ints" if minimum >= 1 else f"ints >= {minimum}"
        raise InputError(f"{option}: expected N or Z,Y,X of {what}, got {text!r}")
    return values


def check_tiling_arguments(args) -> None:
    """Parses ``--tile``, ``--overlap`` and ``--offsets`` in place; checks ``--batch-size``."""
    args.tile = _ints(args.tile, "--tile") if isinstance(args.tile, str) else args.tile
    if isinstance(args.overlap, str):
        args.overlap = _ints(args.overlap, "--overlap")
        if min(args.overlap) < 0:
            raise InputError(f"--overlap: expected output voxels >= 0, N or Z,Y,X; got "
                             f"{','.join(map(str, args.overlap))}")
        if len(args.overlap) == 1:
            args.overlap = args.overlap[0]
    if args.offsets and isinstance(args.offsets[0], str):
        args.offsets = [_ints(o, "--offsets") for o in args.offsets]
        if any(len(o) != 3 for o in args.offsets):
            raise InputError("--offsets: expected Z,Y,X per channel, e.g. --offsets 1,0,0 0,1,0 "
                             f"0,0,1; got {' '.join(','.join(map(str, o)) for o in args.offsets)}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size: expected an int >= 1, got {args.batch_size}")


def predict_to_output(predictor, raw, args, *, model_path=None) -> int:
    """Predicts ``raw`` with a Keras model or an :class:`~emkit.ensemble.Ensemble` and
    writes ``args.output``; the arguments are those of :func:`add_volume_arguments`,
    checked by :func:`check_tiling_arguments`.

    Args:
        predictor: a built Keras model, or an ensemble.
        raw: the opened ``args.input`` (:func:`emkit.io.open_volume`).
        args: the parsed arguments.
        model_path: the model's file, for ``--preprocess auto``.
    """
    from emkit.ensemble import Ensemble, check_members, load_members, predict_ensemble
    from emkit.inference import create_output, predict_volume

    if isinstance(predictor, Ensemble):
        models = load_members(predictor)
        shapes = check_members(models, [f"'{p}'" for p in predictor.paths])
        in_channels, channels, name = shapes.in_channels, shapes.out_channels, "the ensemble"
        method, options, source = _ensemble_preprocessing(args.preprocess, predictor)
    else:
        in_channels = int(predictor.inputs[0].shape[-1])
        channels, name = int(predictor.outputs[0].shape[-1]), f"model {predictor.name!r}"
        method, options, source = _preprocessing(args.preprocess, model_path)
    voxel_size_nm = raw.voxel_size_nm
    if method != "none":
        import numpy as np

        from emkit.preprocess import preprocess

        if not args.quiet:
            print(f"preprocess: {method} ({source})", file=sys.stderr)
        raw = preprocess(np.asarray(raw[...]), method=method, **options)

    offsets = args.offsets
    if offsets is not None and len(offsets) != channels:
        raise InputError(f"--offsets: {name} has {channels} output channel(s); got "
                         f"{len(offsets)} offset(s), one per channel is needed")
    if args.tta and offsets is None and channels > 1:
        if channels != 3:
            raise InputError(
                f"--offsets: {name} has {channels} output channels; --tta needs "
                "the affinity offset of each, e.g. --offsets 1,0,0 0,1,0 0,0,1 ..."
            )
        offsets = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    spatial = raw.shape if in_channels == 1 else raw.shape[:-1]
    if len(spatial) not in (2, 3) or min(spatial, default=0) < 1:
        layout = "(z, y, x) or (y, x)" if in_channels == 1 else \
            f"(z, y, x, {in_channels}) or (y, x, {in_channels}), channels last"
        raise InputError(
            f"--input '{args.input}' has shape {tuple(raw.shape)}; {name} takes "
            f"{in_channels} input channel(s): expected a non-empty {layout} volume"
        )
    tiling = {"tile_shape": args.tile, "overlap": args.overlap, "blend": args.blend,
              "batch_size": args.batch_size, "tta": args.tta, "offsets": offsets,
              "progress": not args.quiet}
    start = time.perf_counter()
    with create_output(
        args.output, (*spatial, channels), voxel_size_nm=voxel_size_nm,
        overwrite=args.overwrite,
    ) as out:
        if isinstance(predictor, Ensemble):
            predict_ensemble(models, raw, weights=predictor.weights, out=out, **tiling)
        else:
            predict_volume(predictor, raw, out=out, **tiling)
    if not args.quiet:
        layout = "(z, y, x)" if channels == 1 else "(c, z, y, x), channels first"
        what = f" (ensemble of {len(models)})" if isinstance(predictor, Ensemble) else ""
        print(
            f"wrote {args.output}{what}: {channels} channel(s) over {tuple(spatial)} voxels, "
            f"float32, {layout}, in {time.perf_counter() - start:.1f} s"
        )
    return 0


def _ensemble_preprocessing(choice: str, ensemble) -> tuple[str, dict, str]:
    """The preprocessing of an ensemble: the recipe.yaml beside its file, else its members'
    (which must agree)."""
    if choice != "auto":
        return choice, {}, "--preprocess"
    if ensemble.source is not None:
        found = _recipe_preprocessing(ensemble.source)
        if found is not None:
            return found
    found = [_preprocessing("auto", p) for p in ensemble.paths]
    if len({(m, tuple(sorted(o.items()))) for m, o, _ in found}) > 1:
        listing = ", ".join(f"{m} ({s})" for m, _, s in found)
        raise InputError(
            f"--preprocess auto: the ensemble's members were trained with different "
            f"preprocessing: {listing}; choose one with --preprocess"
        )
    return found[0]


def _preprocessing(choice: str, model_path) -> tuple[str, dict, str]:
    """The preprocessing to apply: (method, options, where it came from)."""
    if choice != "auto":
        return choice, {}, "--preprocess"
    found = None if model_path is None else _recipe_preprocessing(model_path)
    return found or ("none", {}, "no recipe.yaml beside the model")


def _recipe_preprocessing(model_path) -> tuple[str, dict, str] | None:
    """The preprocessing of the recipe.yaml beside a model file (or one folder up), or None."""
    from pathlib import Path

    import yaml

    model_path = Path(model_path).resolve()
    for folder in (model_path.parent, model_path.parent.parent):
        recipe = folder / "recipe.yaml"
        if recipe.is_file():
            try:
                section = (yaml.safe_load(recipe.read_text()) or {}).get("preprocess") or {}
            except (yaml.YAMLError, AttributeError) as exc:
                problem = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else exc
                raise InputError(f"--preprocess auto: cannot read '{recipe}': {problem}") from None
            method = section.get("method", "none")
            options = {k: section[k] for k in ("sigma", "clip_sigma") if k in section}
            return method, options, str(recipe)
    return None


def _load(path: str):
    from emkit.models.saving import load_model

    return load_model(path, compile=False)


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise InputError(f"{name}: expected ints such as 16,128,128, got {text!r}")
    return values


if __name__ == "__main__":  # pragma: no cover
    from emkit.cli.main import main

    sys.exit(main(["predict", *sys.argv[1:]]))
