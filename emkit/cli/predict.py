"""``emkit predict``: apply a trained model to a whole volume, tile by tile.

    emkit predict --model run/model.keras --input sample_A.hdf:volumes/raw --output pred.zarr:affs
    emkit predict --model n4.keras --input emkit:isbi2012/test-volume --output pred.tif --tta

A thin layer over :func:`emkit.inference.predict_volume`. HDF5, Zarr and ``.npy``
outputs are written tile block by tile block (memory bounded by the tile batch);
TIFF and PNG are written once from memory. Affinities are stored channels first
``(C, Z, Y, X)``, a one-channel map as ``(Z, Y, X)``, with the input's voxel size.
"""

from __future__ import annotations

import argparse
import sys
import time

from emkit.errors import InputError

_BLENDS = ("bump", "gaussian", "valid")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="apply a trained model to a volume, tile by tile, and write the float map",
        description=(
            "Apply a trained Keras model to a whole volume, tile by tile. Tile sizes come from "
            "the model; tiles overlap and are blended (or cut, with --blend valid), and the "
            "volume is mirrored at its edges. A 2D model predicts each section of a stack. "
            "HDF5, Zarr and .npy outputs are written block by block, so the volume may be "
            "larger than memory. Input intensities are scaled as in training: unsigned "
            "integers divided by their maximum (uint8 by 255), floats as they are."
        ),
        epilog=(
            "example: emkit predict --model run/model.keras --input "
            "sample_A.hdf:volumes/raw --output pred.zarr:affs --tta"
        ),
    )
    parser.add_argument("--model", required=True, metavar="M.keras", help="a saved .keras model")
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
             "recipe.yaml beside the model (an emkit run folder), else none. Methods other than "
             "none read the whole input into memory",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from emkit.inference import check_output, create_output, predict_volume
    from emkit.io import open_volume

    tile = _ints(args.tile, "--tile") if args.tile else None
    overlap = _ints(args.overlap, "--overlap") if args.overlap else None
    if overlap is not None and len(overlap) == 1:
        overlap = overlap[0]
    offsets = [_ints(o, "--offsets") for o in args.offsets] if args.offsets else None
    if args.batch_size < 1:
        raise InputError(f"--batch-size: expected an int >= 1, got {args.batch_size}")
    check_output(args.output, overwrite=args.overwrite)  # fail before loading anything
    raw = open_volume(args.input)
    model = _load(args.model)
    method, options, source = _preprocessing(args.preprocess, args.model)
    if method != "none":
        import numpy as np

        from emkit.preprocess import preprocess

        if not args.quiet:
            print(f"preprocess: {method} ({source})", file=sys.stderr)
        voxel_size_nm = raw.voxel_size_nm
        raw = preprocess(np.asarray(raw[...]), method=method, **options)
    else:
        voxel_size_nm = raw.voxel_size_nm

    channels = int(model.outputs[0].shape[-1])
    if args.tta and offsets is None and channels > 1:
        if channels != 3:
            raise InputError(
                f"--offsets: model {model.name!r} has {channels} output channels; --tta needs "
                "the affinity offset of each, e.g. --offsets 1,0,0 0,1,0 0,0,1 ..."
            )
        offsets = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    spatial = raw.shape if int(model.inputs[0].shape[-1]) == 1 else raw.shape[:-1]
    start = time.perf_counter()
    with create_output(
        args.output, (*spatial, channels), voxel_size_nm=voxel_size_nm,
        overwrite=args.overwrite,
    ) as out:
        predict_volume(
            model, raw, tile_shape=tile, overlap=overlap, blend=args.blend,
            batch_size=args.batch_size, tta=args.tta, offsets=offsets, out=out,
            progress=not args.quiet,
        )
    if not args.quiet:
        layout = "(z, y, x)" if channels == 1 else "(c, z, y, x), channels first"
        print(
            f"wrote {args.output}: {channels} channel(s) over {tuple(spatial)} voxels, float32, "
            f"{layout}, in {time.perf_counter() - start:.1f} s"
        )
    return 0


def _preprocessing(choice: str, model_path: str) -> tuple[str, dict, str]:
    """The preprocessing to apply: (method, options, where it came from)."""
    if choice != "auto":
        return choice, {}, "--preprocess"
    from pathlib import Path

    import yaml

    model_path = Path(model_path).resolve()
    for folder in (model_path.parent, model_path.parent.parent):
        recipe = folder / "recipe.yaml"
        if recipe.is_file():
            try:
                section = (yaml.safe_load(recipe.read_text()) or {}).get("preprocess") or {}
            except (yaml.YAMLError, AttributeError) as exc:
                raise InputError(f"--preprocess auto: cannot read '{recipe}': {exc}") from exc
            method = section.get("method", "none")
            options = {k: section[k] for k in ("sigma", "clip_sigma") if k in section}
            return method, options, str(recipe)
    return "none", {}, "no recipe.yaml beside the model"


def _load(path: str):
    import zipfile

    from emkit.models.saving import load_model

    try:
        return load_model(path, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        if isinstance(exc, (InputError, FileNotFoundError)):
            raise
        raise InputError(f"--model: '{path}' is not a Keras model file ({exc})") from exc


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
