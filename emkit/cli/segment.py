"""``emkit segment INPUT --output OUT``: segment a boundary map or an affinity volume."""

from __future__ import annotations

import argparse
import sys
import time

from emkit.cli.arguments import add_command, int_at_least
from emkit.errors import InputError
from emkit.postprocess import options as segment_options  # light: no numba

DESCRIPTION = """\
Segment a boundary map or an affinity volume and write the label volume (uint64,
ids consecutive from 1).

INPUT is read by its shape:
  (z, y, x) or (y, x)  boundary map, 1 = boundary; float in [0, 1], or uint8 read as
                       value / 255. Segmented by a seeded 2D watershed in each section.
  (c, z, y, x)         affinities, stored CHANNELS FIRST on disk as waterz, gunpowder and
                       neuroglancer expect (emkit converts them to channels last in
                       memory). Channels 0-2 are the offsets (1,0,0), (0,1,0), (0,0,1)
                       (z, y, x): channel d at voxel v is P(v and v - d are one object).
                       Further (long-range) channels are ignored. Float in [0, 1], or
                       uint8 read as value / 255. Segmented by the 3D watershed of
                       Zlateski & Seung (2015) with size-dependent merging, then
                       mean-affinity agglomeration.

Agglomeration thresholds are scores, as in waterz: threshold t merges two regions while
the mean affinity along their boundary is above 1 - t (larger t merges more). Several
thresholds come from one pass; then OUT must contain {threshold}, which is replaced by
each value (e.g. seg.h5:seg/{threshold}).

Paths: file.tif, file.h5:volumes/pred, store.zarr:key, file.npy. The voxel size is
copied from INPUT unless --voxel-size is given. Exit status 0 on success, 2 on bad input.

--blockwise segments chunked Zarr or HDF5 affinities larger than memory on Dask: a
watershed per block (block + --halo), the region graph stitched across block faces,
agglomerated hierarchically as ABISS does (no task holds the whole graph; the merges
are the whole-volume ones), and a relabelling per block and threshold
(emkit.blockwise.stitch and emkit.blockwise.hierarchy say why). The same thresholds
(several from one pass, OUT with {threshold}), --scoring and --quantile as in memory;
--dust-size removes whole objects after agglomeration (in memory: watershed fragments,
before it). A killed job, rerun with the same arguments, skips the work it finished.
"""

EPILOG = """\
examples:
  emkit segment pred.h5:volumes/affs --output seg.h5:volumes/labels/neuron_ids
  emkit segment pred.h5:volumes/affs --output seg.h5:seg/{threshold} --thresholds 0.3,0.5
  emkit segment boundaries.tif --output seg.tif --seeds distance
  emkit segment runs/isbi_n4-<time>/outputs/validation.h5:pred --output seg.tif \
      --recipe runs/isbi_n4-<time>        # the options the run tuned
  emkit segment pred.zarr:affs --output seg.zarr:seg --blockwise --block-size 64 --workers 2
  emkit segment pred.zarr:affs --output seg.zarr:seg/{threshold} --blockwise \
      --thresholds 0.3,0.5 --scoring quantile --dust-size 100
"""




# The affinity options come from emkit.postprocess.options; the boundary-map ones are
# emkit.postprocess.watershed2d's, repeated here so that building the parser imports
# nothing heavy (tests check that they agree).
DEFAULTS = {
    **{name: getattr(segment_options.DEFAULTS, name) for name in segment_options.NAMES},
    "thresholds": ",".join(f"{t:g}" for t in segment_options.DEFAULTS.thresholds),
    "seeds": "threshold",
    "seed_threshold": 0.3,
    "min_height": 2.0,
    "smoothing": 1.0,
    "min_size": 20,
}
SCORINGS = segment_options.SCORINGS
SEEDS = ("threshold", "distance")

# (flag, DEFAULTS key, help before "(default: ...)", add_argument keywords). Every option
# defaults to None, so that a --recipe's options fill what the command line leaves out.
AFFINITY_OPTIONS = (
    ("--thresholds", "thresholds", "agglomeration score thresholds in [0, 1]",
     {"metavar": "T[,T...]"}),
    ("--scoring", "scoring", ("edge score: 1 - mean or 1 - quantile of the boundary's "
     "affinities"), {"choices": SCORINGS}),
    ("--quantile", "quantile", "quantile for --scoring quantile, 0.5 being the median",
     {"type": float}),
    ("--bins", "bins", "histogram bins per edge for --scoring quantile",
     {"type": int_at_least(1)}),
    ("--low", "low", "cut edges with affinity <= LOW", {"type": float}),
    ("--high", "high", "always join edges with affinity >= HIGH", {"type": float}),
    ("--size-threshold", "size_threshold", ("regions smaller than this (voxels) merge "
     "along strong edges"), {"type": int_at_least(0)}),
    ("--merge-threshold", "merge_threshold", "smallest edge affinity for those merges",
     {"type": float}),
    ("--dust-size", "dust_size", ("regions still smaller than this (voxels) become 0: the "
     "watershed's fragments, before agglomeration; with --blockwise, whole objects at "
     "each threshold, after it"), {"type": int_at_least(0)}),
)
BOUNDARY_OPTIONS = (
    ("--seeds", "seeds", "seed kind", {"choices": SEEDS}),
    ("--seed-threshold", "seed_threshold", "interior is boundaries < this", {"type": float}),
    ("--min-height", "min_height", "distance seeds: least height (pixels) of a maximum",
     {"type": float}),
    ("--smoothing", "smoothing", "distance seeds: Gaussian sigma in pixels", {"type": float}),
    ("--min-size", "min_size", "absorb segments with fewer pixels",
     {"type": int_at_least(0)}),
)
#: How a default reads in --help where ``str(value)`` is not it.
_SHOWN = {"quantile": f"{DEFAULTS['quantile']:g}", "dust_size": f"{DEFAULTS['dust_size']}, keep all"}


def _add_options(group, options) -> None:
    for flag, key, text, keywords in options:
        group.add_argument(flag, default=None, **keywords,
                           help=f"{text} (default: {_SHOWN.get(key, DEFAULTS[key])})")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "segment",
                         help="segment a boundary map or affinities (watershed + agglomeration)",
                         description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("input", metavar="INPUT", help="boundary map or affinity volume")
    parser.add_argument("--output", "-o", required=True, metavar="OUT",
                        help="where to write the segmentation")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--voxel-size", metavar="Z,Y,X",
                        help="voxel size in nm to store (default: INPUT's)")
    parser.add_argument("--recipe", metavar="RUN|RECIPE",
                        help="take the options below from a recipe's postprocess.options: "
                        "a run folder (its recipe.yaml, with the options tuned by "
                        "`emkit recipe run`), a recipe .yaml file or a shipped recipe's "
                        "name; options given on the command line win")
    group = parser.add_argument_group("affinities: watershed and agglomeration")
    _add_options(group, AFFINITY_OPTIONS)
    group.add_argument("--fragments", metavar="OUT", help="also write the watershed fragments here")
    from emkit.cli.predict import add_blockwise_arguments

    add_blockwise_arguments(parser, default_block="64,64,64")
    parser.add_argument("--halo", default="8,8,8", metavar="Z,Y,X",
                        help="--blockwise: affinities read around each block for its "
                        "watershed, per side (default: 8,8,8)")
    parser.add_argument("--quiet", action="store_true", help="--blockwise: no progress bars")
    _add_options(parser.add_argument_group("boundary maps: seeded 2D watershed"),
                 BOUNDARY_OPTIONS)
    parser.set_defaults(func=run)
    return parser


def parse_floats(text: str, name: str, count: int | None = None) -> tuple[float, ...]:
    """``"0.3,0.5"`` as floats, or InputError naming the option.

    Args:
        text: comma-separated numbers.
        name: the option, for messages.
        count: how many values are needed, or None for any number.
    """
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) != count):
        what = f"{count} numbers" if count else "numbers"
        raise InputError(f"{name} must be {what} separated by commas, got {text!r}")
    return values


def check_writable(spec: str, overwrite: bool) -> None:
    """Fail before any work when an output exists and --overwrite is not given.

    Args:
        spec: the output spec.
        overwrite: whether --overwrite was given.
    """
    from emkit.errors import OverwriteError
    from emkit.io import list_keys, parse_spec

    parsed = parse_spec(spec)
    if overwrite or not parsed.path.exists():
        return
    if parsed.format in ("hdf5", "zarr"):
        if parsed.key in list_keys(parsed.path):
            raise OverwriteError(
                f"'{parsed}' exists; pass --overwrite to replace it"
            )
        return
    raise OverwriteError(f"'{parsed.path}' exists; pass --overwrite to replace it")


#: How far outside [0, 1] a probability may be and still count as rounding.
PROBABILITY_SLACK = 1e-6


def read_probabilities(volume, role: str):
    """A float32 array in [0, 1] from a float or uint8 volume.

    Args:
        volume: the opened input volume.
        role: its name in messages (e.g. ``INPUT``).
    """
    import numpy as np

    data = np.asarray(volume[...])
    if data.dtype == np.uint8:
        return data.astype(np.float32) / np.float32(255)
    if data.dtype.kind != "f":
        raise InputError(
            f"{role} '{volume.spec}' has dtype {data.dtype}; expected floats in [0, 1] "
            "or uint8 (0-255)"
        )
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    # Blended tiles can end an ulp outside [0, 1] (1.0000001): rounding, clipped here.
    if not (lo >= -PROBABILITY_SLACK and hi <= 1 + PROBABILITY_SLACK):  # also catches NaN
        raise InputError(
            f"{role} '{volume.spec}' must hold values in [0, 1] (probabilities), got "
            f"values from {lo} to {hi}"
        )
    data = data.astype(np.float32, copy=False)
    return np.clip(data, 0, 1) if lo < 0 or hi > 1 else data


def recipe_options(source: str) -> tuple[str, dict, str]:
    """``(postprocess.method, postprocess.options, file read)`` of ``--recipe``.

    ``source`` is a run folder (its ``recipe.yaml``), a recipe file or a shipped name.
    """
    from pathlib import Path

    from emkit.recipes.loading import read_recipe_data
    from emkit.recipes.shipped import recipe_path

    path = Path(source)
    if path.is_dir():
        path = path / "recipe.yaml"
        if not path.is_file():
            raise InputError(f"--recipe {source!r}: the folder has no recipe.yaml (is it an "
                             "emkit run folder?)")
    path = recipe_path(path if path.is_file() else source)
    section = read_recipe_data(path).get("postprocess")
    section = section if isinstance(section, dict) else {}
    options = section.get("options") or {}
    if not isinstance(options, dict):
        raise InputError(f"--recipe {str(path)!r}: postprocess.options must be a mapping, "
                         f"got {options!r}")
    return section.get("method", "watershed_2d"), dict(options), str(path)


def resolve_options(args: argparse.Namespace, method: str) -> None:
    """Fills the postprocessing options that the command line left unset: from
    ``--recipe`` when given (its method must be ``method``), else :data:`DEFAULTS`.

    Args:
        args: the parsed arguments, changed in place.
        method: ``watershed_2d`` or ``affinity_watershed``, what the input is segmented with.
    """
    options = {}
    if getattr(args, "recipe", None):
        found, options, path = recipe_options(args.recipe)
        if found != method:
            raise InputError(
                f"--recipe {path!r} segments with {found!r}, but INPUT needs {method!r} "
                f"({'affinities' if method == 'affinity_watershed' else 'a boundary map'})")
        unknown = sorted(set(options) - set(DEFAULTS) - {"offsets"})
        if unknown:
            raise InputError(f"--recipe {path!r}: postprocess.options {unknown} are not "
                             "options of emkit segment")
        if "thresholds" in options:
            options["thresholds"] = ",".join(f"{float(t):g}" for t in options["thresholds"])
    for key, default in DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, options.get(key, default))


def print_view(*specs) -> None:
    """Print (on stderr) the ``emkit view`` line that shows the input and the outputs.

    Args:
        *specs: volume specs: the input, then the segmentations written.
    """
    from emkit.view import view_command

    print(f"view: {view_command(*specs)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emkit.io import open_volume, write_volume

    if getattr(args, "blockwise", False):
        resolve_options(args, "affinity_watershed")
        return run_blockwise(args)
    start = time.perf_counter()
    volume = open_volume(args.input)
    resolve_options(args, "affinity_watershed" if volume.ndim == 4 else "watershed_2d")
    voxel_size = (
        parse_floats(args.voxel_size, "--voxel-size", 3) if args.voxel_size
        else volume.voxel_size_nm
    )
    if volume.ndim == 4:
        options = affinity_options(args)
        thresholds = options["thresholds"]
        outputs = segment_options.threshold_outputs(args.output, thresholds)
        segment_options.check_stored_affinities(volume.shape, f"INPUT '{volume.spec}'")
        for spec in outputs + ([args.fragments] if args.fragments else []):
            check_writable(spec, args.overwrite)
        from emkit.postprocess import segment_affinities

        affs = np.moveaxis(read_probabilities(volume, "INPUT"), 0, -1)  # a view
        result = segment_affinities(affs, return_fragments=bool(args.fragments), **options)
        segs, fragments = result if args.fragments else (result, None)
        if args.fragments:
            write_volume(args.fragments, fragments, voxel_size_nm=voxel_size,
                         overwrite=args.overwrite)
            _report(args.fragments, fragments, "fragments")
        for spec, seg, t in zip(outputs, segs, thresholds):
            write_volume(spec, seg, voxel_size_nm=voxel_size, overwrite=args.overwrite)
            _report(spec, seg, f"segments at threshold {t:g}")
    elif volume.ndim in (2, 3):
        if args.fragments:
            raise InputError("--fragments applies to affinities (c, z, y, x) only")
        check_writable(args.output, args.overwrite)
        from emkit.postprocess import watershed_2d

        seg = watershed_2d(
            read_probabilities(volume, "INPUT"),
            seeds=args.seeds,
            seed_threshold=args.seed_threshold,
            min_height=args.min_height,
            smoothing=args.smoothing,
            min_size=args.min_size,
        )
        write_volume(args.output, seg, voxel_size_nm=voxel_size, overwrite=args.overwrite)
        _report(args.output, seg, "segments")
        outputs = [args.output]
    else:
        raise InputError(
            f"INPUT '{volume.spec}' has shape {volume.shape}: expected a boundary map "
            "(z, y, x) or (y, x), or affinities (c, z, y, x)"
        )
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if volume.ndim >= 3:
        print_view(args.input, *outputs)
    return 0


def run_blockwise(args: argparse.Namespace) -> int:
    """``emkit segment --blockwise``: :func:`emkit.blockwise.segment_blockwise`."""
    from emkit.blockwise import segment_blockwise
    from emkit.cli.predict import block_size

    if args.fragments:
        raise InputError("--fragments is not available with --blockwise")
    if args.voxel_size:
        raise InputError("--voxel-size is not available with --blockwise (INPUT's is kept)")
    summary = segment_blockwise(
        args.input, args.output, block_shape=block_size(args.block_size),
        halo=block_size(args.halo, "--halo", 0), workers=args.workers,
        scheduler=args.scheduler, memory_limit=args.memory_limit, overwrite=args.overwrite,
        progress=not args.quiet, **affinity_options(args),
    )
    run = summary["run"]
    segments = ", ".join(f"{n} at {t:g}" for n, t in zip(summary["segments"],
                                                         summary["thresholds"]))
    print(
        f"wrote {', '.join(summary['outputs'])}: segments {segments}, from "
        f"{summary['fragments']} fragments, {summary['blocks']} blocks of "
        f"{summary['block_shape']} (halo {summary['halo']}); computed now: "
        f"{run['fragments']} fragments, {run['faces']} faces, {run['agglomerate']} "
        f"agglomerate chunks in {summary['levels']} levels, {run['relabel']} relabel; "
        f"in {summary['seconds']:.1f} s",
        file=sys.stderr,
    )
    print_view(args.input, *summary["outputs"])
    return 0


def affinity_options(args: argparse.Namespace) -> dict:
    """The affinity segmentation options of the parsed arguments, by name
    (:data:`emkit.postprocess.options.NAMES`), ``--thresholds`` parsed.

    Args:
        args: The parsed arguments, after :func:`resolve_options`.

    Returns:
        ``{name: value}``, ready for ``segment_affinities`` or ``segment_blockwise``.
    """
    options = {name: getattr(args, name) for name in segment_options.NAMES}
    options["thresholds"] = parse_floats(args.thresholds, "--thresholds")
    return options


def _report(spec, seg, what):
    print(f"wrote {spec}: {int(seg.max())} {what}, shape {tuple(seg.shape)}", file=sys.stderr)
