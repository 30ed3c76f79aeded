"""Score a prediction against ground truth with every metric that applies.

This is the function behind ``emkit evaluate`` and the training issue's validation
callback. It takes plain arrays and returns a plain dict.

Kinds of input:
    prediction  "boundaries": float map in [0, 1], 1 = boundary (uint8 maps are divided
                by 255); "segmentation": integer labels, 0 = no segment.
    ground truth "segmentation": integer labels, 0 = unlabelled; "isbi": the ISBI 2012
                label convention, 255 = interior and 0 = membrane, turned into a
                segmentation by 4-connected components per section.

Which metrics apply (the others are None):
    boundary map vs any ground truth: ``pixel_error``; ``rand_*`` (the Table 3.1
        scores, at ``threshold``, after border thinning); ``v_rand``/``v_info`` (ISBI 2012,
        best over thresholds). A boundary map is always scored section by section.
    segmentation: ``rand_*``, ``v_rand``, ``v_info`` on the segmentation as given;
        ``adapted_rand_error``, ``voi_split``, ``voi_merge``; ``cremi_score`` when the
        voxel size is known.
"""

from __future__ import annotations

import numpy as np

from emkit.errors import InputError
from emkit.metrics.contingency import check_labels, contingency_table
from emkit.metrics.cremi import cremi_score
from emkit.metrics.isbi import DEFAULT_THRESHOLDS, isbi_scores, thinned_segmentation
from emkit.metrics.pixel import pixel_error
from emkit.metrics.rand import rand_from_table
from emkit.metrics.voi import info_from_table

METRICS = (
    "pixel_error",
    "rand_error",
    "rand_split",
    "rand_merge",
    "v_rand",
    "v_info",
    "adapted_rand_error",
    "voi_split",
    "voi_merge",
    "cremi_score",
)
PRED_KINDS = ("auto", "boundaries", "segmentation")
GT_KINDS = ("auto", "segmentation", "isbi")


def detect_pred_kind(pred: np.ndarray) -> str:
    """``"boundaries"`` for a float map, ``"segmentation"`` for integer labels."""
    return "boundaries" if np.asarray(pred).dtype.kind == "f" else "segmentation"


def detect_gt_kind(gt: np.ndarray) -> str:
    """``"isbi"`` for a uint8 volume whose only values are 0 and 255, else ``"segmentation"``.

    A real segmentation with exactly the labels 0 and 255 in uint8 would be read as ISBI
    labels: pass the kind explicitly in that case.
    """
    gt = np.asarray(gt)
    if gt.dtype == np.uint8 and gt.size:
        counts = np.bincount(gt.ravel(), minlength=256)
        present = np.flatnonzero(counts)
        if set(present.tolist()) <= {0, 255}:
            return "isbi"
    return "segmentation"


def _as_boundary_map(pred: np.ndarray, *, invert: bool) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.dtype == np.uint8:
        pred = pred.astype(np.float32) / 255.0
    elif pred.dtype.kind in "iub":
        raise InputError(
            f"a boundary map must be float in [0, 1] (or uint8 0-255), got dtype {pred.dtype}"
        )
    pred = pred.astype(np.float32, copy=False)
    lo, hi = float(np.nanmin(pred)), float(np.nanmax(pred))
    if np.isnan(lo) or lo < 0.0 or hi > 1.0:
        raise InputError(
            f"boundary map values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]"
        )
    return 1.0 - pred if invert else pred


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    pred_kind: str = "auto",
    gt_kind: str = "auto",
    metrics: tuple[str, ...] | None = None,
    voxel_size_nm: tuple[float, float, float] | None = None,
    per_section: bool | None = None,
    threshold: float = 0.5,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    invert: bool = False,
) -> dict:
    """Score ``pred`` against ``gt``.

    Args:
        pred: ndarray of shape (Z, Y, X), a boundary map or a segmentation.
        gt: ndarray of shape (Z, Y, X), a segmentation or ISBI-style labels.
        pred_kind: one of ``PRED_KINDS``; "auto" detects from the dtype (float = map).
        gt_kind: one of ``GT_KINDS``; "auto" picks "isbi" for a uint8 volume of 0/255.
        metrics: a subset of ``METRICS`` to compute; None for all. Others are None.
        voxel_size_nm: (z, y, x), needed for ``cremi_score``.
        per_section: score pairs within sections only. Default: True for ISBI ground
            truth and for boundary maps, False otherwise.
        threshold: boundary threshold for ``pixel_error`` and the ``rand_*`` scores.
        thresholds: thresholds searched for ``v_rand``/``v_info``.
        invert: the map stores 1 = interior (the ISBI submission convention).

    Returns:
        A dict with every key of ``METRICS`` (None where a metric does not apply or was
        not asked for), plus ``pred_kind``, ``gt_kind``, ``per_section`` and, for
        boundary maps, ``v_rand_threshold`` and ``v_info_threshold``.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred_kind not in PRED_KINDS:
        raise InputError(f"pred_kind must be one of {PRED_KINDS}, got {pred_kind!r}")
    if gt_kind not in GT_KINDS:
        raise InputError(f"gt_kind must be one of {GT_KINDS}, got {gt_kind!r}")
    wanted = set(METRICS if metrics is None else metrics)
    unknown = wanted - set(METRICS)
    if unknown:
        raise InputError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} does not match ground truth {gt.shape}")
    if gt.ndim != 3:
        raise InputError(f"expected (Z, Y, X) volumes, got shape {gt.shape}")

    from emkit.targets import isbi_labels_to_boundaries, isbi_labels_to_seg, seg_to_boundaries

    pred_kind = detect_pred_kind(pred) if pred_kind == "auto" else pred_kind
    gt_kind = detect_gt_kind(gt) if gt_kind == "auto" else gt_kind
    gt = check_labels(gt, name="ground truth")
    if gt_kind == "isbi":
        gt_seg = isbi_labels_to_seg(gt)  # rejects values other than 0 and 255
    else:
        gt_seg = gt
    if per_section is None:
        per_section = gt_kind == "isbi" or pred_kind == "boundaries"

    result: dict = {key: None for key in METRICS}
    result.update(pred_kind=pred_kind, gt_kind=gt_kind, per_section=bool(per_section))

    if pred_kind == "boundaries":
        boundaries = _as_boundary_map(pred, invert=invert)
        if "pixel_error" in wanted:
            gt_boundaries = (
                isbi_labels_to_boundaries(gt) if gt_kind == "isbi" else seg_to_boundaries(gt_seg)
            )
            result["pixel_error"] = pixel_error(boundaries, gt_boundaries, threshold=threshold)
        if wanted & {"rand_error", "rand_split", "rand_merge"}:
            table = contingency_table(
                thinned_segmentation(boundaries, threshold), gt_seg, per_section=True
            )
            rand = rand_from_table(table)
            result.update(rand_error=rand.fscore, rand_split=rand.split, rand_merge=rand.merge)
        if wanted & {"v_rand", "v_info"}:
            isbi = isbi_scores(boundaries, gt_seg, thresholds=thresholds)
            result.update(
                v_rand=isbi.v_rand,
                v_rand_threshold=isbi.v_rand_threshold,
                v_info=isbi.v_info,
                v_info_threshold=isbi.v_info_threshold,
            )
    else:
        _score_segmentation(result, pred, gt_seg, wanted, per_section, voxel_size_nm)
    for key in METRICS:
        if key not in wanted:
            result[key] = None
    return result


def _score_segmentation(result, pred, gt_seg, wanted, per_section, voxel_size_nm) -> None:
    seg = check_labels(pred, name="prediction")
    if wanted & {"rand_error", "rand_split", "rand_merge", "v_rand", "v_info",
                 "adapted_rand_error", "voi_split", "voi_merge"}:
        table = contingency_table(seg, gt_seg, per_section=per_section)
        rand = rand_from_table(table)
        info = info_from_table(table)
        result.update(
            rand_error=rand.fscore,
            rand_split=rand.split,
            rand_merge=rand.merge,
            v_rand=rand.fscore,
            v_info=info.v_info,
            adapted_rand_error=rand.error,
            voi_split=info.split,
            voi_merge=info.merge,
        )
    if "cremi_score" in wanted and voxel_size_nm is not None:
        result["cremi_score"] = cremi_score(seg, gt_seg, voxel_size_nm=voxel_size_nm).cremi_score
