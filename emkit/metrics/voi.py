"""Variation of information (Meila 2007) and ISBI's V_info, in bits.

With p_ij = n_ij / N the joint distribution of (ground truth, prediction) labels over the
counted voxels:

    voi_split = H(prediction | ground truth)   over-segmentation, false splits
    voi_merge = H(ground truth | prediction)   under-segmentation, false merges
    I = H(prediction) + H(ground truth) - H(joint)          mutual information
    V_info_split = I / H(prediction),  V_info_merge = I / H(ground truth)
    V_info = 2 I / (H(prediction) + H(ground truth))        (Arganda-Carreras 2015, Eq. 6)

Label 0 is handled as in :mod:`emkit.metrics.rand`: ground-truth 0 is not counted;
each predicted-0 voxel is its own singleton segment. Where the prediction has no 0,
``(voi_split, voi_merge)`` equals ``skimage.metrics.variation_of_information(gt, seg,
ignore_labels=(0,))`` exactly (both in bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emkit.metrics.contingency import Contingency, cell_sums, contingency_table


@dataclass(frozen=True)
class InfoScores:
    """Entropies (bits) and information-theoretic scores of a segmentation.

    Attributes:
        split: H(prediction | ground truth), bits; 0 means no false splits.
        merge: H(ground truth | prediction), bits; 0 means no false merges.
        v_info: ISBI's V_info score, 1 is perfect.
        v_info_split: I / H(prediction).
        v_info_merge: I / H(ground truth).
    """

    split: float
    merge: float
    v_info: float
    v_info_split: float
    v_info_merge: float


def _entropy(counts: np.ndarray, total: int) -> float:
    counts = counts[counts > 0].astype(np.float64)
    p = counts / total
    return float(-(p @ np.log2(p)))


def info_from_table(table: Contingency) -> InfoScores:
    """Conditional entropies and V_info from a contingency table.

    Args:
        table: a :class:`~emkit.metrics.contingency.Contingency`.

    Returns:
        :class:`InfoScores`. An empty table (nothing counted) gives zeros and scores of 1.
    """
    sums = cell_sums(table, logs=True)
    total = sums.total
    if total == 0:
        return InfoScores(0.0, 0.0, 1.0, 1.0, 1.0)
    n_single = sums.singletons
    # Each predicted-0 voxel is a segment of its own: probability 1/N, in the joint too.
    single_term = n_single / total * np.log2(total) if n_single else 0.0
    h_joint = -sums.joint_plogp + single_term
    h_gt = _entropy(sums.gt_sizes, total)
    h_seg = _entropy(sums.seg_sizes, total) + single_term
    mutual = h_gt + h_seg - h_joint

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 1.0

    return InfoScores(
        split=max(h_joint - h_gt, 0.0),
        merge=max(h_joint - h_seg, 0.0),
        v_info=ratio(2 * mutual, h_seg + h_gt),
        v_info_split=ratio(mutual, h_seg),
        v_info_merge=ratio(mutual, h_gt),
    )


def variation_of_information(
    seg: np.ndarray, gt: np.ndarray, *, per_section: bool = False
) -> tuple[float, float]:
    """VOI split and merge, in bits.

    Args:
        seg: ndarray of shape (Z, Y, X), predicted labels.
        gt: ndarray of shape (Z, Y, X), ground-truth labels (0 ignored).
        per_section: count each section separately (2D evaluation of a stack).

    Returns:
        ``(voi_split, voi_merge)``: H(seg | gt) and H(gt | seg).

    >>> variation_of_information(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1]))
    (1.0, 0.0)
    """
    info = info_from_table(contingency_table(seg, gt, per_section=per_section))
    return info.split, info.merge
