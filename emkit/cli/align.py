"""``emkit align``: align a stack, misalign one for a benchmark, apply and score transforms.

    emkit align run INPUT --output OUT [--transforms T.h5] [--method xcorr|learned]
                    [--refine none|affine|elastic] [--model M.keras] [--prealign xcorr|none]
                    [--drift-sigma S] [--overwrite]
    emkit align train RECIPE [--set key=value ...] [--quick] [--output DIR] [--resume]
    emkit align misalign INPUT --output OUT --transforms TRUE.h5 [--seed N]
                    [--labels L --labels-output LO] [--drift-px ...]
    emkit align apply INPUT --transforms T.h5 --output OUT [--order 0|1]
    emkit align score INPUT [--truth TRUE.h5]

A thin layer over :mod:`emkit.align`. Transforms files (.h5 or .npz) map aligned pixel
coordinates to raw ones, one 3x3 matrix (and optionally a displacement field) per section.
"""

from __future__ import annotations

import argparse
import sys
import time

from emkit.cli.arguments import add_command, int_at_least
from emkit.errors import InputError

EPILOG = """\
examples:
  emkit align misalign emkit:isbi2012/train-volume --output mis.h5:raw \\
      --transforms true.h5 --seed 0 --labels emkit:isbi2012/train-labels \\
      --labels-output mis.h5:labels
  emkit align run mis.h5:raw --output aligned.h5:raw --transforms est.h5 --refine affine
  emkit align train align_learned_flow           # same as: emkit recipe run align_learned_flow
  emkit align run mis.h5:raw --output aligned.h5:raw --method learned \
      --model runs/align_learned_flow-<time>/model.keras --prealign xcorr
  emkit align apply mis.h5:labels --transforms est.h5 --output aligned.h5:labels --order 0
  emkit align score est.h5 --truth true.h5
  emkit align score aligned.h5:raw
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "align",
                         help="align EM sections; misalign a stack with known transforms; score",
                         description="Align the sections of a stack (run), train a learned "
                                     "aligner (train), make a misalignment benchmark (misalign), "
                                     "warp a volume with saved transforms (apply), and score an "
                                     "alignment (score).",
                         epilog=EPILOG)
    sub = parser.add_subparsers(dest="align_command", metavar="ACTION", required=True)

    run_p = add_command(sub, "run",
                        help="align a stack (cross-correlation, or a trained learned aligner)",
                        description="--method xcorr: register each section to its predecessor by "
                                    "cross-correlation (coarse then sub-pixel), optionally "
                                    "refine by block matching (affine with RANSAC, or elastic). "
                                    "--method learned: a trained pair model (emkit align train) "
                                    "registers each section to the aligned previous one, after a "
                                    "cross-correlation translation (--prealign xcorr). Then: "
                                    "chain, remove the slow drift, and write the aligned stack.")
    run_p.add_argument("input", metavar="INPUT", help="the (z, y, x) stack to align")
    run_p.add_argument("--output", "-o", required=True, metavar="OUT",
                       help="the aligned stack (same shape; 0 where no data)")
    run_p.add_argument("--transforms", metavar="T.h5", help="also save the transforms (.h5/.npz)")
    run_p.add_argument("--method", choices=("xcorr", "learned"), default="xcorr",
                       help="alignment method (default: xcorr)")
    run_p.add_argument("--refine", choices=("none", "affine", "elastic"), default="none",
                       help="xcorr: after translation, block-matched affine (RANSAC) or "
                            "elastic field")
    run_p.add_argument("--model", metavar="M.keras",
                       help="learned: the trained align model (runs/align_learned_*/model.keras)")
    run_p.add_argument("--prealign", choices=("xcorr", "none"), default="xcorr",
                       help="learned: a cross-correlation translation first, the network "
                            "corrects the rest (default xcorr; large slips exceed its reach)")
    run_p.add_argument("--drift-sigma", type=float, default=10.0, metavar="S",
                       help="remove the trend over z of width S sections (0: keep the whole "
                            "chain; default 10)")
    run_p.add_argument("--upsample", type=int_at_least(1), default=20,
                       help="sub-pixel precision 1/N pixel (default 20)")
    run_p.add_argument("--block-size", type=int_at_least(1), metavar="PX",
                       help="block edge for --refine (default: a quarter of the section)")
    run_p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    run_p.set_defaults(func=run_align)

    train = add_command(sub, "train", help="train a learned aligner from a task: align recipe",
                        description="Train the pair network of an align recipe "
                                    "(align_learned_affine, align_learned_flow, or a .yaml with "
                                    "task: align) on neighbouring sections of its training "
                                    "stack, with checkpoints, resume and MLflow tracking. The "
                                    "same as `emkit recipe run RECIPE`.")
    train.add_argument("recipe", metavar="RECIPE", help="a shipped align recipe or a .yaml path")
    train.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                       metavar="KEY=VALUE", help="override a key, e.g. train.max_steps=100")
    train.add_argument("--quick", action="store_true", help="a budget of about 2 minutes")
    train.add_argument("--root", help="data root (sets data.root)")
    train.add_argument("--output", help="the run folder (default runs/<recipe>-<time>); a "
                                        "folder with an unfinished run is resumed")
    train.add_argument("--resume", action="store_true", help="train a finished --output run further")
    train.add_argument("--overwrite", action="store_true",
                       help="start the --output folder afresh, deleting the run in it (an "
                            "unfinished run's MLflow run is ended as KILLED)")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (sets tracking.uri)")
    train.set_defaults(func=run_train)

    mis = add_command(sub, "misalign",
                      help="misalign a well-aligned stack; save the true transforms",
                      description="Apply seeded random translations (drift + jitter + slips), "
                                  "rotations and smooth elastic distortions; crop the margin so "
                                  "no padding shows; save the true transforms that undo the "
                                  "misalignment.")
    mis.add_argument("input", metavar="INPUT", help="a well-aligned (z, y, x) stack")
    mis.add_argument("--output", "-o", required=True, metavar="OUT", help="the misaligned stack")
    mis.add_argument("--transforms", required=True, metavar="TRUE.h5",
                     help="where to save the true transforms (.h5/.npz)")
    mis.add_argument("--labels", metavar="L", help="labels to misalign identically")
    mis.add_argument("--labels-output", metavar="LO", help="where to write the labels")
    mis.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    mis.add_argument("--sections", metavar="A:B", help="use sections A to B-1 only")
    for flag, default, text in (("--drift-px", 0.2, "random-walk step, pixels"),
                                ("--jitter-px", 1.0, "per-section jitter, pixels"),
                                ("--slip-p", 0.1, "probability of a slip per section"),
                                ("--slip-px", 5.0, "largest slip per axis, pixels"),
                                ("--rotation-deg", 0.5, "rotation sigma, degrees"),
                                ("--elastic-px", 1.0, "elastic control vector sigma, pixels")):
        mis.add_argument(flag, type=float, default=default, help=f"{text} (default {default})")
    mis.add_argument("--elastic-grid", type=int_at_least(2), default=4, help="elastic control grid (default 4)")
    mis.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    mis.set_defaults(func=run_misalign)

    app = add_command(sub, "apply", help="warp a volume with saved transforms",
                      description="Warp each section: out[z][p] = in[z][T_z(p)].")
    app.add_argument("input", metavar="INPUT", help="the (z, y, x) volume to warp")
    app.add_argument("--transforms", required=True, metavar="T.h5", help="transforms file")
    app.add_argument("--output", "-o", required=True, metavar="OUT", help="the warped volume")
    app.add_argument("--order", type=int, choices=(0, 1, 3), default=1,
                     help="interpolation: 1 (bilinear, default) for images, 0 (nearest) for "
                          "labels, 3 (cubic spline)")
    app.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    app.set_defaults(func=run_apply)

    score = add_command(sub, "score",
                        help="score transforms against the truth, or a stack by neighbour NCC",
                        description="INPUT is a transforms file (.npz, or .h5 without a key, "
                                    "written by emkit): its residual displacement against "
                                    "--truth is printed, in pixels, after removing the global "
                                    "rigid offset. Otherwise INPUT is an aligned stack: the mean "
                                    "neighbour NCC, raw and smoothed, over pixels that are not 0 "
                                    "in either section.")
    score.add_argument("input", metavar="INPUT", help="transforms file or aligned stack")
    score.add_argument("--truth", metavar="TRUE.h5", help="the true transforms")
    score.add_argument("--shape", metavar="Y,X",
                       help="section shape for transforms without fields (default: from the "
                            "files' attributes)")
    score.add_argument("--sigma", type=float, default=2.0, help="NCC smoothing (default 2 px)")
    score.add_argument("--json", action="store_true", help="print JSON")
    score.set_defaults(func=run_score)
    return parser


def _read_stack(spec, role="INPUT"):
    import numpy as np

    from emkit.io import open_volume, require_ndim

    volume = open_volume(spec)
    require_ndim(volume, 3, name=f"{role} {volume.spec}")
    return np.asarray(volume[...]), volume.voxel_size_nm


def _check_outputs(specs, transforms, overwrite):
    from pathlib import Path

    from emkit.align.io import file_format
    from emkit.cli.segment import check_writable
    from emkit.errors import OverwriteError

    for spec in specs:
        if spec:
            check_writable(spec, overwrite)
    if transforms:
        file_format(transforms)
        if Path(transforms).exists() and not overwrite:
            raise OverwriteError(f"'{transforms}' exists; pass --overwrite to replace it")


def run_align(args) -> int:
    from emkit.align import align_xcorr, apply_transforms, save_transforms

    if args.method == "learned" and not args.model:
        raise InputError("--method learned needs --model M.keras (train one with "
                         "`emkit align train align_learned_flow`)")
    if args.method == "xcorr" and args.model:
        raise InputError("--model is used only with --method learned")
    _check_outputs([args.output], args.transforms, args.overwrite)
    raw, voxel_size = _read_stack(args.input)
    if args.method == "learned":
        from emkit.align.learned import align_learned, load_align_model

        model = load_align_model(args.model)
        start = time.perf_counter()
        transforms = align_learned(raw, model, prealign=args.prealign,
                                   drift_sigma=args.drift_sigma or None, progress=True)
    else:
        start = time.perf_counter()
        transforms = align_xcorr(raw, refine=args.refine, drift_sigma=args.drift_sigma or None,
                                 upsample_factor=args.upsample, block_size=args.block_size,
                                 progress=True)
    seconds = time.perf_counter() - start
    aligned = apply_transforms(raw, transforms, order=1)
    _write(args.output, aligned, voxel_size, args.overwrite)
    if args.transforms:
        save_transforms(args.transforms, transforms, overwrite=args.overwrite, attrs={
            "method": args.method, "refine": args.refine, "drift_sigma": args.drift_sigma,
            "model": args.model, "prealign": args.prealign if args.model else None,
            "input": str(args.input), "input_shape": raw.shape[1:],
            "output_shape": aligned.shape[1:]})
        print(f"wrote {args.transforms}", file=sys.stderr)
    print(f"aligned {len(raw)} sections in {seconds:.1f} s "
          f"({seconds / max(len(raw), 1):.2f} s per section)", file=sys.stderr)
    return 0


def run_train(args) -> int:
    from emkit.cli.recipe import aligner_summary, recipe_overrides, run_output
    from emkit.recipes import load_recipe
    from emkit.recipes.run import run_recipe
    from emkit.tracking import tracking_uri

    recipe = load_recipe(args.recipe, recipe_overrides(args), quick=args.quick)
    if getattr(recipe, "task", None) != "align":
        raise InputError(f"recipe {args.recipe!r} is a segmentation recipe; `emkit align train` "
                         "takes a recipe with task: align (align_learned_affine, "
                         "align_learned_flow); run it with `emkit recipe run`")
    result = run_recipe(recipe, output=run_output(args, recipe), resume=args.resume,
                        overwrite=args.overwrite, verbose=2)
    print(aligner_summary(recipe, result, tracking_uri(recipe.tracking.uri)))
    return 0


def run_misalign(args) -> int:
    from emkit.align import misalign_stack, save_transforms

    if bool(args.labels) != bool(args.labels_output):
        raise InputError("--labels and --labels-output go together")
    _check_outputs([args.output, args.labels_output], args.transforms, args.overwrite)
    raw, voxel_size = _read_stack(args.input)
    labels = _read_stack(args.labels, "--labels")[0] if args.labels else None
    if labels is not None and labels.shape != raw.shape:
        raise InputError(f"--labels '{args.labels}' have shape {labels.shape}, INPUT "
                         f"'{args.input}' has {raw.shape}")
    if args.sections:
        window = _sections(args.sections, len(raw))
        raw = raw[window]
        labels = None if labels is None else labels[window]
    result = misalign_stack(raw, labels=labels, seed=args.seed, drift_px=args.drift_px,
                            jitter_px=args.jitter_px, slip_p=args.slip_p, slip_px=args.slip_px,
                            rotation_deg=args.rotation_deg, elastic_px=args.elastic_px,
                            elastic_grid=args.elastic_grid)
    _write(args.output, result.raw, voxel_size, args.overwrite)
    if labels is not None:
        _write(args.labels_output, result.labels, voxel_size, args.overwrite)
    save_transforms(args.transforms, result.transforms, overwrite=args.overwrite, attrs={
        "method": "misalign", "seed": args.seed, "margin": result.margin,
        "input": str(args.input), "input_shape": result.raw.shape[1:],
        "output_shape": result.raw.shape[1:], "sections": args.sections,
        "motions": {k: getattr(args, k) for k in ("drift_px", "jitter_px", "slip_p", "slip_px",
                                                  "rotation_deg", "elastic_px", "elastic_grid")}})
    print(f"wrote {args.transforms}: margin {result.margin} px cropped from each side, "
          f"shape {result.raw.shape}", file=sys.stderr)
    return 0


def _sections(text, depth):
    try:
        a, b = (int(v) if v else None for v in text.split(":"))
    except ValueError as exc:
        raise InputError(f"--sections must be A:B (e.g. 0:10), got {text!r}") from exc
    window = slice(a, b)
    if len(range(depth)[window]) < 2:
        raise InputError(f"--sections {text} leaves fewer than 2 of {depth} sections")
    return window


def run_apply(args) -> int:
    from emkit.align import apply_transforms, load_transforms

    _check_outputs([args.output], None, args.overwrite)
    stack, voxel_size = _read_stack(args.input)
    transforms = load_transforms(args.transforms)
    if len(transforms) != len(stack):
        raise InputError(f"'{args.transforms}' holds {len(transforms)} transforms but INPUT "
                         f"'{args.input}' has {len(stack)} sections")
    out = apply_transforms(stack, transforms, order=args.order, progress=True)
    _write(args.output, out, voxel_size, args.overwrite)
    return 0


def run_score(args) -> int:
    import json

    from emkit.align import (
        is_transforms_file,
        load_transforms,
        ncc_scores,
        read_transforms_attrs,
        residual_displacement,
    )

    if is_transforms_file(args.input):
        if not args.truth:
            raise InputError(f"'{args.input}' holds transforms: give --truth TRUE.h5 to score "
                             "them (or score an aligned stack for NCC)")
        estimated, truth = load_transforms(args.input), load_transforms(args.truth)
        if args.shape:
            from emkit.cli.segment import parse_floats

            shape = tuple(int(v) for v in parse_floats(args.shape, "--shape", 2))
        else:
            attrs = read_transforms_attrs(args.truth)
            shape = truth.shape or attrs.get("output_shape")
            if shape is None:
                raise InputError(f"'{args.truth}' does not say its section shape; give --shape Y,X")
        shape = tuple(shape)
        result = residual_displacement(estimated, truth, shape=shape)
        report = {"residual_mean_px": result.mean, "residual_rms_px": result.rms,
                  "residual_p95_px": result.p95, "residual_max_px": result.max,
                  "offset_rotation_deg": result.offset_rotation_deg,
                  "offset_translation_px": list(result.offset_translation),
                  "points": result.points,
                  "per_section_px": [float(v) for v in result.per_section]}
    else:
        stack, _ = _read_stack(args.input)
        report = ncc_scores(stack, valid=stack != 0, sigma=args.sigma)
        if args.truth:
            print("note: --truth is used only with a transforms file", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if isinstance(value, float):
                print(f"{key:22s} {value:.4f}")
            elif key != "per_section_px":
                print(f"{key:22s} {value}")
    return 0


def _write(spec, array, voxel_size, overwrite):
    from emkit.io import write_volume

    write_volume(spec, array, voxel_size_nm=voxel_size, overwrite=overwrite)
    print(f"wrote {spec}: shape {tuple(array.shape)}, {array.dtype}", file=sys.stderr)
