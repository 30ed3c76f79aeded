"""``emkit evaluate PRED GT``: score a prediction against ground truth."""

from __future__ import annotations

import argparse
import json
import sys

from emkit.cli.arguments import add_command
from emkit.errors import InputError

DESCRIPTION = """\
Score a prediction against ground truth and print a table (or JSON with --json).

PRED is a boundary probability map (float in [0, 1], 1 = boundary; uint8 maps are read
as 0-255) or a segmentation (integer labels, 0 = no segment). GT is a segmentation
(integer labels, 0 = unlabelled and not scored) or ISBI 2012 labels (uint8, 255 =
interior, 0 = membrane). Both kinds are detected from the data unless given: a float
PRED is a boundary map; a uint8 GT holding only 0 and 255 is ISBI labels.

Metrics (1 = perfect for scores, 0 = perfect for errors):
  pixel_error         boundary map only: fraction of pixels wrong at --threshold
  rand_error          Rand F-score as the thesis's Table 3.1 reports it ("Rand - Full")
  rand_split          its split score (low = false splits)
  rand_merge          its merge score (low = false merges)
  v_rand, v_info      ISBI 2012 leaderboard scores: foreground-restricted; for a
                      boundary map, after border thinning, best over thresholds 0..1
  adapted_rand_error  SNEMI3D adapted Rand error (1 - Rand F-score)
  voi_split           H(PRED | GT) in bits
  voi_merge           H(GT | PRED) in bits
  cremi_score         sqrt(VOI x ARAND) with CREMI's 25 nm border mask (needs the
                      voxel size, read from the file or given with --voxel-size)
Metrics that do not apply to the inputs are null.

Paths: file.tif, file.h5:volumes/labels/neuron_ids, store.zarr:path, file.npy, or a
folder of PNG sections. Exit status 0 on success, 2 on bad input.
"""

EPILOG = """\
examples:
  emkit evaluate pred.tif train-labels.tif
  emkit evaluate seg.h5:volumes/labels/neuron_ids gt.h5:volumes/labels/neuron_ids --json
  emkit evaluate raw.tif train-labels.tif --pred-kind boundaries --invert --metrics pixel_error,v_rand
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "evaluate", help="score a prediction against ground truth",
                         description=DESCRIPTION,
                         epilog=EPILOG)
    parser.add_argument("pred", metavar="PRED", help="boundary map or segmentation volume")
    parser.add_argument("gt", metavar="GT", help="ground-truth segmentation or ISBI labels")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--metrics",
        metavar="A,B",
        help="comma-separated subset of metrics to compute (default: all)",
    )
    parser.add_argument(
        "--pred-kind",
        choices=("auto", "boundaries", "segmentation"),
        default="auto",
        help="what PRED holds (default: auto, float = boundaries)",
    )
    parser.add_argument(
        "--gt-kind",
        choices=("auto", "segmentation", "isbi"),
        default="auto",
        help="what GT holds (default: auto, uint8 with only 0/255 = isbi)",
    )
    parser.add_argument(
        "--invert",
        action="store_true",
        help="PRED stores 1 = interior (ISBI submission convention, or a raw EM image)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="boundary threshold for pixel_error and rand_* (default: 0.5)",
    )
    parser.add_argument(
        "--voxel-size",
        metavar="Z,Y,X",
        help="voxel size in nm, when the files do not carry it (for cremi_score)",
    )
    section = parser.add_mutually_exclusive_group()
    section.add_argument(
        "--per-section",
        dest="per_section",
        action="store_true",
        default=None,
        help="score pairs within sections only (default for ISBI labels and boundary maps)",
    )
    section.add_argument(
        "--3d",
        dest="per_section",
        action="store_false",
        help="score pairs across the whole volume (default for segmentations)",
    )
    parser.set_defaults(func=run)
    return parser


def _parse_voxel_size(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise InputError(f"--voxel-size must be three positive numbers z,y,x, got {text!r}")
    return values


def _load(spec: str, role: str):
    from emkit.io import open_volume

    volume = open_volume(spec)
    if volume.ndim != 3:
        raise InputError(
            f"{role} {spec!r} has shape {tuple(volume.shape)}: expected a 3D (z, y, x) volume"
        )
    return volume


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emkit.metrics.contingency import iter_slabs
    from emkit.metrics.evaluate import METRICS, evaluate

    if not 0.0 <= args.threshold <= 1.0:  # also refuses NaN
        raise InputError(f"--threshold: expected a boundary probability in [0, 1], got "
                         f"{args.threshold:g}")
    metrics = None
    if args.metrics:
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise InputError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    pred_volume = _load(args.pred, "PRED")
    gt_volume = _load(args.gt, "GT")
    if tuple(pred_volume.shape) != tuple(gt_volume.shape):
        raise InputError(
            f"PRED {args.pred!r} has shape {tuple(pred_volume.shape)} but GT {args.gt!r} "
            f"has shape {tuple(gt_volume.shape)}: they must match"
        )
    voxel_size = (
        _parse_voxel_size(args.voxel_size)
        if args.voxel_size
        else gt_volume.voxel_size_nm or pred_volume.voxel_size_nm
    )
    # The volumes stay on disk: evaluate() reads them slab by slab, in bounded memory.
    if np.dtype(gt_volume.dtype).kind == "f":
        raise InputError(
            f"GT {args.gt!r} holds floats ({gt_volume.dtype}); ground truth must be integer "
            "labels"
        )
    if 0 in gt_volume.shape:
        raise InputError(f"GT {args.gt!r} is empty (shape {tuple(gt_volume.shape)}): nothing "
                         "to score")
    if not any(slabs[0].any() for _, _, slabs in iter_slabs(gt_volume)):
        raise InputError(
            f"GT {args.gt!r} has no labelled voxel: every value is 0, which means unlabelled "
            "(or membrane, for ISBI labels), so nothing would be scored"
        )
    result = evaluate(
        pred_volume,
        gt_volume,
        pred_kind=args.pred_kind,
        gt_kind=args.gt_kind,
        metrics=metrics,
        voxel_size_nm=voxel_size,
        per_section=args.per_section,
        threshold=args.threshold,
        invert=args.invert,
    )
    wants_cremi = metrics is None or "cremi_score" in metrics
    if wants_cremi and voxel_size is None and result["pred_kind"] == "segmentation":
        print(
            "emkit: note: cremi_score needs the voxel size; pass --voxel-size z,y,x",
            file=sys.stderr,
        )
    result["pred"] = args.pred
    result["gt"] = args.gt
    result["shape"] = list(gt_volume.shape)
    result["voxel_size_nm"] = list(voxel_size) if voxel_size else None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result, METRICS))
    return 0


_NOTES = {
    "pixel_error": "fraction of pixels wrong at the threshold (0 = perfect)",
    "rand_error": "Rand F-score, Table 3.1 'Rand - Full' (1 = perfect)",
    "rand_split": "Rand split score (1 = no false splits)",
    "rand_merge": "Rand merge score (1 = no false merges)",
    "v_rand": "ISBI 2012 V_rand (1 = perfect)",
    "v_info": "ISBI 2012 V_info (1 = perfect)",
    "adapted_rand_error": "SNEMI3D adapted Rand error (0 = perfect)",
    "voi_split": "VOI split, bits (0 = perfect)",
    "voi_merge": "VOI merge, bits (0 = perfect)",
    "cremi_score": "CREMI sqrt(VOI x ARAND) (0 = perfect)",
}


def format_table(result: dict, metrics) -> str:
    """A readable table of the metrics in ``result``.

    Args:
        result: the evaluation (:func:`emkit.metrics.evaluate`) with the inputs' names.
        metrics: the metric names, in the table's order.
    """
    shape = " x ".join(str(s) for s in result["shape"])
    mode = "per section" if result["per_section"] else "3D"
    lines = [
        f"PRED {result['pred']} ({result['pred_kind']})",
        f"GT   {result['gt']} ({result['gt_kind']}), {shape}, scored {mode}",
        "",
        f"{'metric':<20}{'value':>10}  notes",
        f"{'-' * 20}{'-' * 10}  {'-' * 40}",
    ]
    for key in metrics:
        value = result.get(key)
        text = "-" if value is None else f"{value:.6f}"
        note = _NOTES[key]
        if key == "v_rand" and result.get("v_rand_threshold") is not None:
            note += f", at threshold {result['v_rand_threshold']:.1f}"
        if key == "v_info" and result.get("v_info_threshold") is not None:
            note += f", at threshold {result['v_info_threshold']:.1f}"
        lines.append(f"{key:<20}{text:>10}  {note}")
    return "\n".join(lines)
