"""Alignment benchmark: misalign well-aligned stacks with known transforms, realign, score.

    .venv/bin/python benchmarks/alignment.py [--datasets isbi2012,medulla] [--root DATA]
        [--sections 10] [--size 512] [--seed 0] [--refine none,affine,elastic]
        [--drift-sigma 10] [--model runs/.../model.keras] [--start isbi2012=20,medulla=150]
        [--learned runs/align_learned_affine-.../model.keras,runs/align_learned_flow-.../model.keras]

For each data set ``--sections`` sections from ``--start`` (default: medulla 150, the
held-out sections the learned aligners' recipes do not train on; isbi2012 20, after
the training sections 0-19), centre-cropped to ``--size``, are
misaligned by :func:`emkit.align.misalign_stack` (translations: random walk + jitter +
slips; rotations; elastic distortions; its defaults unless given) and then aligned by:

* ``unaligned``: identity transforms (the misaligned stack as it is);
* ``xcorr``, ``xcorr+affine``, ``xcorr+elastic``: :func:`emkit.align.align_xcorr`;
* ``learned <kind>``, ``xcorr+learned <kind>``: for each ``--learned`` model,
  :func:`emkit.align.learned.align_learned` without and with the cross-correlation
  translation first (``prealign="xcorr"``);
* ``truth``: the generator's true transforms (the best any method can do);
* ``xcorr on the original``: a calibration row, ``xcorr`` run on the original crop
  (not misaligned) and scored against the identity: how far the data's own content
  moves the aligner.

Columns: residual displacement against the truth in raw pixels (mean and 95th
percentile over a 16-pixel grid, after removing the global rigid offset; see
:mod:`emkit.align.metrics`), the mean neighbour NCC of the realigned stack, raw and
smoothed (sigma 2 px), over pixels valid in both sections, and the alignment time per
section. The NCC of the original (unmisaligned, cropped) stack is printed too.

``--model M.keras`` adds the downstream score of a fixed segmentation model: each
realigned stack is preprocessed as the model's run was (``--preprocess``; default the
``recipe.yaml`` beside the model), predicted (:func:`emkit.inference.predict_volume`),
segmented (a boundary model: :func:`emkit.postprocess.watershed_2d`; an affinity model:
:func:`emkit.postprocess.segment_affinities`, ``--threshold`` 0.5) and scored by
:func:`emkit.metrics.evaluate` against the labels warped identically (nearest
neighbour), with pixels outside the valid region unlabelled (0). A 2D boundary model
segments each section on its own and is scored per section, so it sees misalignment
only through interpolation and the valid region; a 3D affinity model is scored in 3D.

The ISBI 2012 training stack is not itself aligned: its neighbouring sections are offset
by pixels (its labels agree), and ``xcorr`` corrects those offsets too, which counts as
residual against the truth. Medulla (FIB-SEM, 10 nm isotropic) is aligned, but its
neurites run obliquely, which the drift regularization (``--drift-sigma``) is there for.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

METHODS = {"none": "xcorr", "affine": "xcorr+affine", "elastic": "xcorr+elastic"}


#: The first benchmark section of each data set: after the learned aligners' training sections.
DEFAULT_START = {"isbi2012": 20, "medulla": 150}


def load_stack(name: str, *, root, sections: int, size: int, start: int = 0):
    """``sections`` sections of a data set from ``start``, centre-cropped to ``size``: (raw, seg)."""
    from emkit.datasets import load_dataset
    from emkit.targets import isbi_labels_to_seg

    data = load_dataset(name, root=root)
    window = np.s_[start:start + sections]
    raw = np.asarray(data.raw[window])
    if len(raw) < 2:
        raise SystemExit(f"{name}: --start {start} leaves {len(raw)} sections")
    labels = None if data.labels is None else np.asarray(data.labels[window])
    y0, x0 = ((n - min(size, n)) // 2 for n in raw.shape[1:])
    box = np.s_[:, y0:y0 + min(size, raw.shape[1]), x0:x0 + min(size, raw.shape[2])]
    raw = raw[box]
    if labels is not None:
        labels = labels[box]
        labels = isbi_labels_to_seg(labels) if data.label_kind == "isbi" else labels
    return raw, labels


def downstream(model, raw, labels, valid, *, preprocess_method="none", threshold=0.5) -> dict:
    """Rand scores of a fixed model's segmentation of ``raw`` against ``labels``.

    ``raw`` gets the model's own preprocessing (``preprocess_method``, see
    :func:`emkit.preprocess.preprocess`) first; affinities are segmented at ``threshold``.
    """
    from emkit.inference import predict_volume
    from emkit.metrics import evaluate
    from emkit.postprocess import segment_affinities, watershed_2d
    from emkit.preprocess import preprocess

    pred = predict_volume(model, preprocess(raw, method=preprocess_method), progress=False)
    gt = np.where(valid, labels, 0)
    if pred.shape[-1] == 1:
        seg = watershed_2d(np.clip(pred[..., 0], 0, 1))
        per_section = True
    else:
        seg = segment_affinities(np.clip(pred[..., :3], 0, 1), thresholds=(threshold,))[0]
        per_section = False
    scores = evaluate(seg, gt, gt_kind="segmentation", per_section=per_section,
                      metrics=("rand_error", "adapted_rand_error"))
    return {"rand_f": scores["rand_error"], "adapted_rand_error": scores["adapted_rand_error"]}


def run_dataset(name, args, model, learned=()) -> list[dict]:
    from emkit.align import (
        align_xcorr,
        apply_transforms,
        identity_transforms,
        misalign_stack,
        ncc_scores,
        residual_displacement,
        valid_mask,
    )

    first = args.start.get(name, DEFAULT_START.get(name, 0))
    raw, labels = load_stack(name, root=args.root, sections=args.sections, size=args.size,
                             start=first)
    motions = {k: getattr(args, k) for k in ("drift_px", "jitter_px", "slip_p", "slip_px",
                                              "rotation_deg", "elastic_px")}
    mis = misalign_stack(raw, labels=labels, seed=args.seed, **motions)
    shape = mis.raw.shape[1:]
    original = mis.crop(raw)
    print(f"{name} z {first}-{first + len(raw) - 1}: {mis.raw.shape} after a {mis.margin}-pixel margin; original NCC "
          f"{ncc_scores(original)['ncc']:.4f} (smoothed "
          f"{ncc_scores(original)['ncc_smoothed']:.4f})", file=sys.stderr, flush=True)
    # Calibration: xcorr on the original itself, scored against the identity. What it
    # moves there is the data's own offsets and oblique anatomy, not misalignment.
    start = time.perf_counter()
    itself = align_xcorr(original, drift_sigma=args.drift_sigma or None)
    seconds = (time.perf_counter() - start) / len(original)
    moved = residual_displacement(itself, identity_transforms(len(original)), shape=shape)
    rows = [{"dataset": name, "method": "xcorr on the original", "residual": moved.mean,
             "residual_p95": moved.p95, "seconds": seconds,
             **ncc_scores(apply_transforms(original, itself),
                          valid=valid_mask(itself, shape))}]
    candidates = [("unaligned", None)] + [(METHODS[r], r) for r in args.refine]
    for kind, aligner in learned:
        candidates += [(f"learned {kind}", (aligner, "none")),
                       (f"xcorr+learned {kind}", (aligner, "xcorr"))]
    candidates.append(("truth", None))
    for label, refine in candidates:
        if isinstance(refine, tuple):  # warm up once: graph tracing is not alignment time
            from emkit.align.learned import align_learned

            align_learned(mis.raw[:2], refine[0], prealign=refine[1])
        clock = time.perf_counter()
        if label == "unaligned":
            transforms = identity_transforms(len(mis.raw))
        elif label == "truth":
            transforms = mis.transforms
        elif isinstance(refine, tuple):
            transforms = align_learned(mis.raw, refine[0], prealign=refine[1],
                                       drift_sigma=args.drift_sigma or None)
        else:
            transforms = align_xcorr(mis.raw, refine=refine, drift_sigma=args.drift_sigma or None)
        seconds = (time.perf_counter() - clock) / len(mis.raw)
        aligned = apply_transforms(mis.raw, transforms)
        valid = valid_mask(transforms, shape)
        residual = residual_displacement(transforms, mis.transforms, shape=shape)
        row = {"dataset": name, "method": label, "residual": residual.mean,
               "residual_p95": residual.p95, "seconds": seconds,
               **ncc_scores(aligned, valid=valid)}
        if model is not None and mis.labels is not None:
            warped = apply_transforms(mis.labels, transforms, order=0)
            row.update(downstream(model, aligned, warped, valid,
                                  preprocess_method=args.preprocess, threshold=args.threshold))
        rows.append(row)
        print(f"  {label}: residual {residual.mean:.2f} px, {seconds:.2f} s/section",
              file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="isbi2012,medulla",
                        help="comma-separated: isbi2012 (bundled), medulla (data root)")
    parser.add_argument("--root", help="data root (default: $EMKIT_DATA)")
    parser.add_argument("--sections", type=int, default=10)
    parser.add_argument("--size", type=int, default=512, help="centre crop, pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refine", default="none,affine,elastic",
                        help="xcorr variants to run (none, affine, elastic)")
    parser.add_argument("--drift-sigma", type=float, default=10.0,
                        help="xcorr drift regularization, sections (0: none)")
    parser.add_argument("--model", help="a trained .keras model for the downstream Rand score")
    parser.add_argument("--preprocess", default=None,
                        help="the --model's preprocessing (none, standardize, whiten); default: "
                             "the recipe.yaml beside the model, else none")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="agglomeration threshold of an affinity --model (default 0.5)")
    parser.add_argument("--learned", default="",
                        help="comma-separated trained align models (emkit align train): rows "
                             "'learned <kind>' and 'xcorr+learned <kind>'")
    parser.add_argument("--start", default="",
                        help="first section per data set, e.g. isbi2012=20,medulla=150 "
                             f"(default {DEFAULT_START}); a bare number sets every data set")
    for flag, default in (("--drift-px", 0.2), ("--jitter-px", 1.0), ("--slip-p", 0.1),
                          ("--slip-px", 5.0), ("--rotation-deg", 0.5), ("--elastic-px", 1.0)):
        parser.add_argument(flag, type=float, default=default, help=f"generator (default {default})")
    args = parser.parse_args(argv)
    args.refine = [r for r in args.refine.split(",") if r]
    unknown = set(args.refine) - set(METHODS)
    if unknown:
        parser.error(f"--refine: unknown {sorted(unknown)}; choose from {sorted(METHODS)}")
    args.start = parse_start(args.start, parser)
    learned = []
    for path in [p for p in args.learned.split(",") if p]:
        from emkit.align.learned import load_align_model
        from emkit.align.learned_model import transform_kind

        aligner = load_align_model(path)
        learned.append((transform_kind(aligner), aligner))
    model = None
    if args.model:
        from emkit.models.saving import load_model

        model = load_model(args.model, compile=False)
        if args.preprocess is None:
            args.preprocess = model_preprocess(args.model)
    rows = []
    for name in [n for n in args.datasets.split(",") if n]:
        rows += run_dataset(name, args, model, learned)
    extra = model is not None
    print("| data set | method | residual px (mean) | residual px (p95) | NCC | NCC smoothed |"
          " s / section |" + (" Rand F | adapted Rand error |" if extra else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if extra else ""))
    for r in rows:
        line = (f"| {r['dataset']} | {r['method']} | {r['residual']:.2f} | "
                f"{r['residual_p95']:.2f} | {r['ncc']:.4f} | {r['ncc_smoothed']:.4f} | "
                f"{r['seconds']:.2f} |")
        if extra:
            line += "".join(f" {r[k]:.4f} |" if k in r else " - |"
                            for k in ("rand_f", "adapted_rand_error"))
        print(line)
    return 0


def model_preprocess(path) -> str:
    """The preprocessing method of the run that made the model at ``path`` (its folder's
    ``recipe.yaml``), or ``"none"`` when there is no recipe beside it."""
    import yaml

    recipe = Path(path).parent / "recipe.yaml"
    if not recipe.is_file():
        return "none"
    return (yaml.safe_load(recipe.read_text()).get("preprocess") or {}).get("method", "none")


def parse_start(text, parser) -> dict:
    """``"isbi2012=20,medulla=150"`` -> dict; ``"7"`` -> every data set from 7."""
    out = {}
    for part in [p for p in text.split(",") if p]:
        key, sep, value = part.rpartition("=")
        try:
            number = int(value)
        except ValueError:
            parser.error(f"--start: expected NAME=INT or INT, got {part!r}")
        if sep:
            out[key] = number
        else:
            out = {name: number for name in ("isbi2012", "medulla", *out)}
    return out


if __name__ == "__main__":
    sys.exit(main())
