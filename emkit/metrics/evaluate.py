"""Score a prediction against ground truth with every metric that applies.

This is the function behind ``emkit evaluate`` and the training issue's validation
callback. It takes plain arrays, or lazy ones (an :class:`emkit.io.Volume`, an h5py
dataset, a Zarr array), and returns a plain dict. A segmentation scored against a
segmentation is read in slabs of sections, so that a blockwise output stored in a file
is scored in memory bounded by one slab and the tables; ISBI labels and boundary maps
are read whole.

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
from emkit.metrics.contingency import (
    SLAB_VOXELS,
    ContingencyCounter,
    as_array_or_lazy,
    check_label_dtype,
    check_labels,
    concatenate,
    contingency_table,
    is_lazy,
    iter_slabs,
)
from emkit.metrics.cremi import cremi_from_table, cremi_mask
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


def detect_pred_kind(pred) -> str:
    """``"boundaries"`` for a float map, ``"segmentation"`` for integer labels."""
    return "boundaries" if as_array_or_lazy(pred).dtype.kind == "f" else "segmentation"


def detect_gt_kind(gt, *, slab_voxels: int = SLAB_VOXELS) -> str:
    """``"isbi"`` for a uint8 volume whose only values are 0 and 255, else ``"segmentation"``.

    A real segmentation with exactly the labels 0 and 255 in uint8 would be read as ISBI
    labels: pass the kind explicitly in that case. A lazy volume is read in slabs.
    """
    gt = as_array_or_lazy(gt)
    if gt.dtype == np.uint8 and int(np.prod(gt.shape, dtype=np.int64)):
        counts = np.zeros(256, dtype=np.int64)
        for _, _, (slab,) in iter_slabs(gt, slab_voxels=slab_voxels):
            counts += np.bincount(slab.ravel(), minlength=256)
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
    pred,
    gt,
    *,
    pred_kind: str = "auto",
    gt_kind: str = "auto",
    metrics: tuple[str, ...] | None = None,
    voxel_size_nm: tuple[float, float, float] | None = None,
    per_section: bool | None = None,
    threshold: float = 0.5,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    invert: bool = False,
    slab_voxels: int = SLAB_VOXELS,
) -> dict:
    """Score ``pred`` against ``gt``.

    Args:
        pred: ndarray of shape (Z, Y, X), a boundary map or a segmentation; or a lazy
            array (:class:`emkit.io.Volume`, h5py dataset, Zarr array).
        gt: ndarray or lazy array of shape (Z, Y, X), a segmentation or ISBI-style
            labels.
        pred_kind: one of ``PRED_KINDS``; "auto" detects from the dtype (float = map).
        gt_kind: one of ``GT_KINDS``; "auto" picks "isbi" for a uint8 volume of 0/255.
        metrics: a subset of ``METRICS`` to compute; None for all. Others are None.
        voxel_size_nm: (z, y, x), needed for ``cremi_score``.
        per_section: score pairs within sections only. Default: True for ISBI ground
            truth and for boundary maps, False otherwise.
        threshold: boundary threshold for ``pixel_error`` and the ``rand_*`` scores.
        thresholds: thresholds searched for ``v_rand``/``v_info``.
        invert: the map stores 1 = interior (the ISBI submission convention).
        slab_voxels: a segmentation scored against a segmentation is read and counted
            this many voxels at a time (whole sections, at least one); the scores do not
            depend on it.

    Returns:
        A dict with every key of ``METRICS`` (None where a metric does not apply or was
        not asked for), plus ``pred_kind``, ``gt_kind``, ``per_section`` and, for
        boundary maps, ``v_rand_threshold`` and ``v_info_threshold``.
    """
    pred = as_array_or_lazy(pred)
    gt = as_array_or_lazy(gt)
    if pred_kind not in PRED_KINDS:
        raise InputError(f"pred_kind must be one of {PRED_KINDS}, got {pred_kind!r}")
    if gt_kind not in GT_KINDS:
        raise InputError(f"gt_kind must be one of {GT_KINDS}, got {gt_kind!r}")
    wanted = set(METRICS if metrics is None else metrics)
    unknown = wanted - set(METRICS)
    if unknown:
        raise InputError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    if tuple(pred.shape) != tuple(gt.shape):
        raise InputError(
            f"prediction shape {tuple(pred.shape)} does not match ground truth "
            f"{tuple(gt.shape)}"
        )
    if len(gt.shape) != 3:
        raise InputError(f"expected (Z, Y, X) volumes, got shape {tuple(gt.shape)}")

    from emkit.targets import isbi_labels_to_boundaries, isbi_labels_to_seg, seg_to_boundaries

    pred_kind = detect_pred_kind(pred) if pred_kind == "auto" else pred_kind
    gt_kind = (
        detect_gt_kind(gt, slab_voxels=slab_voxels) if gt_kind == "auto" else gt_kind
    )
    check_label_dtype(gt.dtype, name="ground truth")
    if gt_kind == "isbi" or pred_kind == "boundaries":
        # per-section operations on whole stacks: read everything
        pred = np.asarray(pred[...]) if is_lazy(pred) else pred
        gt = check_labels(gt[...] if is_lazy(gt) else gt, name="ground truth")
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
        _score_segmentation(
            result, pred, gt_seg, wanted, per_section, voxel_size_nm, slab_voxels
        )
    for key in METRICS:
        if key not in wanted:
            result[key] = None
    return result


_TABLE_METRICS = {
    "rand_error", "rand_split", "rand_merge", "v_rand", "v_info", "adapted_rand_error",
    "voi_split", "voi_merge",
}


def _score_segmentation(result, pred, gt_seg, wanted, per_section, voxel_size_nm,
                        slab_voxels) -> None:
    """Table metrics and the CREMI score, both counted in one pass over the slabs."""
    check_label_dtype(pred.dtype, name="prediction")
    want_table = bool(wanted & _TABLE_METRICS)
    want_cremi = "cremi_score" in wanted and voxel_size_nm is not None
    if want_cremi and len(voxel_size_nm) != 3:
        raise InputError(f"voxel_size_nm must be (z, y, x), got {voxel_size_nm!r}")
    if not (want_table or want_cremi):
        return
    counter = ContingencyCounter()
    sections = []
    cremi_counter = ContingencyCounter(ignore_gt=())
    for _, _, (seg, gt) in iter_slabs(pred, gt_seg, slab_voxels=slab_voxels):
        if want_table and per_section:
            for z in range(gt.shape[0]):
                section = ContingencyCounter()
                section.add(seg[z], gt[z])
                sections.append(section.table())
        elif want_table:
            counter.add(seg, gt)
        if want_cremi:
            cremi_counter.add(seg, gt, mask=~cremi_mask(gt, voxel_size_nm=voxel_size_nm))
    if want_table:
        table = concatenate(sections) if per_section else counter.table()
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
    if want_cremi:
        n_voxels = int(np.prod(gt_seg.shape, dtype=np.int64))
        result["cremi_score"] = cremi_from_table(cremi_counter.table(), n_voxels).cremi_score
